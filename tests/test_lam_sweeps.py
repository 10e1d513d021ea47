"""cscnb.robustness.sweeps: test-time λ sweeps of CSC networks and the choice on validation data (chapter 13)."""
import pytest
import torch
import torch.nn as nn

from cscnb.nn.csc_layer import CSCLayer, test_time_lam
from cscnb.robustness import csc_layers, lam_sweep, select_lam
from cscnb.robustness.sweeps import recalibrate_batchnorm


def _two_csc_layers():
    torch.manual_seed(0)
    return nn.Sequential(CSCLayer(1, 4, 3, padding=1, n_iter=2, lam=0.1),
                         CSCLayer(4, 3, 3, padding=1, n_iter=2, lam=0.2), nn.Flatten())


def test_csc_layers_in_module_order():
    model = _two_csc_layers()
    assert csc_layers(model) == [model[0], model[1]]
    assert csc_layers(model[1]) == [model[1]]
    assert csc_layers(nn.Linear(2, 2)) == []
    with pytest.raises(TypeError, match="model"):
        csc_layers("not a module")


def test_sweep_equals_a_loop_over_test_time_lam_and_restores_lam(float64):
    model = _two_csc_layers().eval()   # in training mode every call refreshes the layers' step-size estimate
    x = torch.randn(5, 1, 6, 6)
    score = lambda m: float(m(x).detach().sum())  # noqa: E731
    lams = [0.0, 0.3, 0.1]
    expected = []
    for lam in lams:
        with test_time_lam(model, lam):
            expected.append(score(model))
    assert lam_sweep(model, score, lams) == expected
    assert float(model[0].lam) == 0.1 and float(model[1].lam) == 0.2


def test_stem_changes_only_the_first_csc_layer(float64):
    model = _two_csc_layers()
    seen = []
    lam_sweep(model, lambda m: seen.append((float(m[0].lam), float(m[1].lam))) or 0.0, [0.5, 0.7], layers="stem")
    assert seen == [(0.5, 0.2), (0.7, 0.2)]
    seen.clear()
    lam_sweep(model, lambda m: seen.append((float(m[0].lam), float(m[1].lam))) or 0.0, [0.5], layers="all")
    assert seen == [(0.5, 0.5)]


def test_lam_restored_when_score_raises(float64):
    model = _two_csc_layers()

    def failing(m):
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        lam_sweep(model, failing, [0.9])
    assert float(model[0].lam) == 0.1


def test_select_lam_best_score_and_ties():
    assert select_lam([0.1, 0.2, 0.4], [0.8, 0.9, 0.85]) == 0.2
    assert select_lam([0.1, 0.2, 0.4], [0.9, 0.9, 0.85]) == 0.1          # ties: the first listed
    assert select_lam([0.2, 0.1, 0.4], [0.9, 0.9, 0.85]) == 0.2
    assert select_lam([0.1, 0.2, 0.4], [1.0, 0.7, 0.9], metric="loss") == 0.2


def test_select_lam_refuses_non_finite_scores():
    # a NaN first score used to win (comparisons with NaN are false both ways): now an error naming the argument
    for scores in ([float("nan"), 0.5, 0.4], [0.5, float("inf"), 0.4], [0.5, 0.4, float("-inf")]):
        for metric in ("accuracy", "loss"):
            with pytest.raises(ValueError, match="scores must be finite"):
                select_lam([0.1, 0.2, 0.3], scores, metric=metric)
    with pytest.raises(TypeError, match="scores"):
        select_lam([0.1, 0.2], ["0.5", 0.4])
    with pytest.raises(TypeError, match="scores"):
        select_lam([0.1, 0.2], 0.5)
    assert select_lam([0.1, 0.2], [torch.tensor(0.3), 0.5]) == 0.2


def _csc_bn_net():
    torch.manual_seed(1)
    return nn.Sequential(CSCLayer(1, 4, 3, padding=1, n_iter=2, lam=0.1), nn.BatchNorm2d(4),
                         nn.Conv2d(4, 2, 3), nn.BatchNorm2d(2), nn.Flatten())


def test_recalibrate_batchnorm_statistics_are_those_of_the_inputs(float64):
    model = _csc_bn_net()
    x = torch.randn(7, 1, 6, 6)
    recalibrate_batchnorm(model, x)
    assert not model.training and model[1].momentum == 0.1
    with torch.no_grad():
        first = model[0](x)                                        # what the first BatchNorm sees
        torch.testing.assert_close(model[1].running_mean, first.mean(dim=(0, 2, 3)))
        torch.testing.assert_close(model[1].running_var, first.var(dim=(0, 2, 3), unbiased=True))
        # the second BatchNorm sees the first one's output normalised with the batch statistics (training mode)
        batch = (first - first.mean(dim=(0, 2, 3), keepdim=True)) / torch.sqrt(
            first.var(dim=(0, 2, 3), unbiased=False, keepdim=True) + model[1].eps)
        second = model[2](batch * model[1].weight[:, None, None] + model[1].bias[:, None, None])
        torch.testing.assert_close(model[3].running_mean, second.mean(dim=(0, 2, 3)))
        torch.testing.assert_close(model[3].running_var, second.var(dim=(0, 2, 3), unbiased=True))


def test_sweep_with_recalibration_uses_the_statistics_at_each_lam_and_leaves_the_model_alone(float64):
    model = _csc_bn_net().eval()
    x = torch.randn(6, 1, 6, 6)
    with torch.no_grad():
        model(x)   # the CSC layer creates its step-size state on its first call
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    lam_sweep(model, lambda m: seen.append((float(m[0].lam), m[1].running_mean.clone())) or 0.0, [0.0, 0.4],
              recalibrate_on=x)
    for lam, running_mean in seen:
        with torch.no_grad(), test_time_lam(model, lam):
            torch.testing.assert_close(running_mean, model[0](x).mean(dim=(0, 2, 3)))
    assert not torch.allclose(seen[0][1], seen[1][1])                # a larger lambda moves the statistics
    for key, value in model.state_dict().items():                     # the model itself is unchanged
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    # without recalibration the trained statistics are used: the default path is the one tested above
    plain = lam_sweep(model, lambda m: float(m[1].running_mean.sum()), [0.0, 0.4])
    assert plain[0] == plain[1] == float(before["1.running_mean"].sum())


@pytest.mark.parametrize("call, error, match", [
    (lambda m: lam_sweep(m, lambda _: 0.0, []), ValueError, "lams"),
    (lambda m: lam_sweep(m, lambda _: 0.0, [-0.1]), ValueError, "lams"),
    (lambda m: lam_sweep(m, lambda _: 0.0, "0.1"), TypeError, "lams"),
    (lambda m: lam_sweep(m, lambda _: 0.0, [0.1], layers="first"), ValueError, "layers"),
    (lambda m: lam_sweep(m, 0.5, [0.1]), TypeError, "score"),
    (lambda m: lam_sweep(nn.Linear(2, 2), lambda _: 0.0, [0.1]), ValueError, "CSCLayer"),
    (lambda m: select_lam([0.1, 0.2], [0.5]), ValueError, "scores"),
    (lambda m: select_lam([0.1], [0.5], metric="auc"), ValueError, "metric"),
    (lambda m: lam_sweep(m, lambda _: 0.0, [0.1], recalibrate_on=[1.0, 2.0]), TypeError, "recalibrate_on"),
    (lambda m: lam_sweep(m, lambda _: 0.0, [0.1], recalibrate_on=torch.randn(1, 1, 6, 6)), ValueError,
     "recalibrate_on"),
    (lambda m: lam_sweep(m, lambda _: 0.0, [0.1], recalibrate_on=torch.randn(4, 1, 6, 6)), ValueError,
     "BatchNorm"),
    (lambda m: recalibrate_batchnorm(m, torch.randn(4, 1, 6, 6)), ValueError, "BatchNorm"),
    (lambda m: recalibrate_batchnorm("net", torch.randn(4, 1, 6, 6)), TypeError, "model"),
    (lambda m: recalibrate_batchnorm(_csc_bn_net(), "x"), TypeError, "inputs"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call(_two_csc_layers())
