"""cscnb.train.fit / evaluate / summarize and the Split container with its validation carve."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cscnb
from cscnb.data import Split, stratified_mask
from cscnb.train import evaluate, fit, summarize


def _toy(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 4, generator=g) * 0.5 + (2 * y.float() - 1).unsqueeze(1)
    return x, y


def test_fit_matches_a_hand_written_adam_loop():
    # the reference: the same mini-batch order (seeded generator), Adam, mean cross-entropy per epoch
    x, y = _toy()
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    reference = nn.Linear(4, 2)
    reference.load_state_dict(model.state_dict())
    result = fit(model, x, y, epochs=3, batch_size=32, lr=1e-2, seed=5)
    generator = torch.Generator().manual_seed(5)
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        order, total = torch.randperm(len(x), generator=generator), 0.0
        for i in range(0, len(x), 32):
            idx = order[i:i + 32]
            loss = F.cross_entropy(reference(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(x))
    assert result.train_loss == losses and result.best_epoch is None and result.val_metric == []
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b)


def test_early_stopping_restores_the_best_validation_epoch():
    x, y = _toy()
    x_val, y_val = _toy(100, seed=1)
    y_val = 1 - y_val  # a validation set the model gets worse on as it learns: best epoch is the first
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    result = fit(model, x, y, epochs=20, lr=5e-2, seed=0, validation=(x_val, y_val), patience=3)
    assert result.stopped_early and result.epochs_run < 20
    assert result.best_val_metric == max(result.val_metric)
    assert result.best_epoch == result.val_metric.index(max(result.val_metric)) + 1
    assert evaluate(model, x_val, y_val) == result.best_val_metric  # the best epoch's weights are back


def test_regression_uses_the_loss_metric_and_after_step_projects():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    model = nn.Linear(3, 1)

    def clamp_bias(m):
        with torch.no_grad():
            m.bias.clamp_(max=0.0)
    result = fit(model, x, y, epochs=30, batch_size=8, lr=5e-2, loss=F.mse_loss, validation=(x, y),
                 after_step=clamp_bias)
    assert result.metric == "loss" and result.best_val_metric < 0.05
    assert float(model.bias.detach()) <= 0.0
    assert math.isclose(evaluate(model, x, y, metric="loss", loss=F.mse_loss), result.best_val_metric, rel_tol=1e-6)


def test_summarize_is_mean_and_sample_std():
    s = summarize([1.0, 2.0, 4.0])
    assert s.n == 3 and s.mean == pytest.approx(7 / 3) and s.std == pytest.approx(math.sqrt(7 / 3))
    assert (s.min, s.max) == (1.0, 4.0) and str(s).startswith("2.333 ± 1.528")
    assert summarize([3.0]).std == 0.0


@pytest.mark.parametrize("call, error, name", [
    (lambda: fit(nn.Linear(2, 2), torch.ones(4, 2), torch.zeros(3, dtype=torch.long)), ValueError, "training"),
    (lambda: fit(nn.Linear(2, 2), torch.ones(4, 2), torch.zeros(4, dtype=torch.long), patience=2), ValueError,
     "patience"),
    (lambda: fit(nn.Linear(2, 2), torch.ones(4, 2), torch.zeros(4, dtype=torch.long), epochs=0), ValueError, "epochs"),
    (lambda: fit(nn.Linear(2, 2), torch.ones(4, 2), torch.zeros(4, dtype=torch.long), validation=torch.ones(2)),
     TypeError, "validation"),
    (lambda: fit(nn.Linear(2, 2), torch.ones(4, 2), torch.zeros(4, dtype=torch.long), loss="hinge"), ValueError,
     "loss"),
    (lambda: evaluate(nn.Linear(2, 2), torch.ones(4, 2), torch.zeros(4, dtype=torch.long), metric="f1"), ValueError,
     "metric"),
    (lambda: summarize([]), ValueError, "values"),
    (lambda: summarize([1.0, math.nan]), ValueError, "values"),
])
def test_bad_input(call, error, name):
    with pytest.raises(error, match=name):
        call()


def test_validation_carve_is_stratified_disjoint_and_seeded():
    split = cscnb.load_digits(seed=0)
    carved = cscnb.load_digits(seed=0, val_fraction=0.2)
    assert carved.has_validation and not split.has_validation
    n_train, n_val = len(carved.y_train), len(carved.y_val)
    assert n_train + n_val == len(split.y_train) and torch.equal(carved.y_test, split.y_test)
    for c in range(10):  # every class keeps about 20 % of its training images for validation
        total = int((carved.y_train == c).sum() + (carved.y_val == c).sum())
        assert int((carved.y_val == c).sum()) == round(0.2 * total)
    # standardized with the statistics of the remaining training images only
    assert abs(float(carved.x_train.mean())) < 1e-5 and abs(float(carved.x_train.std()) - 1) < 1e-5
    again = cscnb.load_digits(seed=0, val_fraction=0.2)
    assert torch.equal(again.x_val, carved.x_val)
    # the test split is unchanged by the carve (no validation: same arrays as before the option existed)
    assert torch.equal(split.x_test * split.std + split.mean, carved.x_test * carved.std + carved.mean) or \
        torch.allclose(split.x_test * split.std + split.mean, carved.x_test * carved.std + carved.mean, atol=1e-4)


def test_split_with_validation_and_mask():
    labels = torch.tensor([0] * 10 + [1] * 4)
    mask = stratified_mask(labels, 0.3, torch.Generator().manual_seed(0))
    assert int(mask[:10].sum()) == 3 and int(mask[10:].sum()) == 1
    split = Split(torch.arange(14.0).unsqueeze(1), labels, torch.zeros(2, 1), torch.zeros(2, dtype=torch.long), 2)
    carved = split.with_validation(0.3, seed=0)
    assert sorted(carved.x_train.flatten().tolist() + carved.x_val.flatten().tolist()) == list(range(14))
    with pytest.raises(ValueError, match="validation"):
        carved.with_validation(0.3)
    mnist = cscnb.load_mnist1d(num_samples=200, val_fraction=0.25)
    assert mnist.has_validation and mnist.num_classes == 10 and len(mnist.y_val) == 40
