"""cscnb.robustness.sweeps: test-time λ sweeps of CSC networks and the choice on validation data (chapter 13)."""
import pytest
import torch
import torch.nn as nn

from cscnb.nn.csc_layer import CSCLayer, test_time_lam
from cscnb.robustness import csc_layers, lam_sweep, select_lam


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


@pytest.mark.parametrize("call, error, match", [
    (lambda m: lam_sweep(m, lambda _: 0.0, []), ValueError, "lams"),
    (lambda m: lam_sweep(m, lambda _: 0.0, [-0.1]), ValueError, "lams"),
    (lambda m: lam_sweep(m, lambda _: 0.0, "0.1"), TypeError, "lams"),
    (lambda m: lam_sweep(m, lambda _: 0.0, [0.1], layers="first"), ValueError, "layers"),
    (lambda m: lam_sweep(m, 0.5, [0.1]), TypeError, "score"),
    (lambda m: lam_sweep(nn.Linear(2, 2), lambda _: 0.0, [0.1]), ValueError, "CSCLayer"),
    (lambda m: select_lam([0.1, 0.2], [0.5]), ValueError, "scores"),
    (lambda m: select_lam([0.1], [0.5], metric="auc"), ValueError, "metric"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call(_two_csc_layers())
