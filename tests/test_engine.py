"""The one proximal-gradient loop (cscnb.solvers.engine), the prox family's out= variants, and that each of
the FISTA momentum update, the restart test, the elastic-net prox and the power iteration exists once."""
import math
import re
from pathlib import Path

import pytest
import torch

import cscnb
from cscnb.core.operator_norm import power_iteration
from cscnb.core.prox import elastic_net_prox, hard_threshold, nonneg_soft_threshold, soft_threshold
from cscnb.solvers.engine import extrapolate, fista_momentum, gradient_restart, proximal_gradient

pytestmark = pytest.mark.usefixtures("float64")  # tests/conftest.py

PACKAGE = Path(cscnb.__file__).resolve().parent


def _sources():
    return {path: path.read_text(encoding="utf-8") for path in PACKAGE.rglob("*.py")}


@pytest.mark.parametrize("pattern,home", [
    (r"sqrt\(1 \+ 4", "solvers/engine.py"),                      # the FISTA momentum update
    (r"def gradient_restart|vecdot\(", "solvers/engine.py"),      # the restart test
    (r"/ \(1 \+ s\)|div_\(1 \+ s\)", "core/prox.py"),             # the elastic-net shrink
    (r"def power_iteration|/ norm\.clamp_min", "core/operator_norm.py"),  # the power iteration
])
def test_each_concept_is_written_once(pattern, home):
    places = {path.relative_to(PACKAGE).as_posix() for path, text in _sources().items() if re.search(pattern, text)}
    assert places == {home}


def _problem(seed=0, batch=5, n=12, m=20):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(n, m, generator=generator)
    weight = weight / weight.norm(dim=0)
    x = torch.randn(batch, n, generator=generator)
    step = 1 / float(torch.linalg.matrix_norm(weight, ord=2) ** 2)
    return weight, x, step


def _prox_grad(weight, x, step, lam=0.1):
    def step_map(y, k, out=None):
        return elastic_net_prox(y - step * ((y @ weight.T - x) @ weight), step * lam, out=out, check=False)
    return step_map


@pytest.mark.parametrize("momentum", ["none", "fista"])
def test_the_loop_is_textbook_ista_and_fista(momentum):
    weight, x, step = _problem()
    step_map = _prox_grad(weight, x, step)
    z0 = torch.zeros(5, 20)
    z, k = proximal_gradient(step_map, z0, 30, momentum=momentum)
    reference, previous, y, t = z0, z0, z0, 1.0   # chapter 5, eq-ista / eq-fista written out
    for _ in range(30):
        reference = step_map(y, 0)
        if momentum == "fista":
            t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
            y = reference + (t - 1) / t_next * (reference - previous)
            t = t_next
        else:
            y = reference
        previous = reference
    assert k == 30
    torch.testing.assert_close(z, reference, rtol=0, atol=1e-14)


def test_restart_loop_in_place_equals_the_differentiable_loop_and_shrinks_the_batch():
    weight, x, step = _problem(1, batch=6)
    results = {}
    for inplace in (False, True):
        record, rows = {}, {"rows": torch.arange(6)}

        def step_map(y, k, out, rows=rows):  # the samples still in the batch
            return _prox_grad(weight, x[rows["rows"]], step, lam=0.05)(y, k, out)

        def monitor(k, z_next, z_prev, delta, record=record, rows=rows):
            done = delta.norm(dim=1) <= 1e-9 * z_next.norm(dim=1)
            for r, code in zip(rows["rows"][done].tolist(), z_next[done], strict=True):
                record[r] = code.clone()
            rows["rows"] = rows["rows"][~done]
            return ~done
        with torch.set_grad_enabled(not inplace):
            z, _ = proximal_gradient(step_map, torch.zeros(6, 20), 2000, momentum="restart", inplace=inplace,
                                     monitor=monitor, check_every=5)
        assert z.shape[0] == 0  # every sample left the batch
        results[inplace] = record
    assert sorted(results[True]) == sorted(results[False]) == list(range(6))
    for r in range(6):
        torch.testing.assert_close(results[True][r], results[False][r], rtol=0, atol=1e-10)
    solved = cscnb.solve(cscnb.LinearDictionary(weight), x, 0.05, tol=1e-13, n_iter=20000).z
    torch.testing.assert_close(torch.stack([results[True][r] for r in range(6)]), solved, rtol=0, atol=1e-7)
    z0 = torch.zeros(6, 20)
    with torch.no_grad():
        proximal_gradient(_prox_grad(weight, x, step), z0, 5, momentum="restart", inplace=True)
    assert torch.equal(z0, torch.zeros(6, 20))  # the caller's start is never written


def test_a_carried_image_is_the_image_of_the_extrapolated_point():
    weight, x, step = _problem(2)
    step_map = _prox_grad(weight, x, step)
    seen = []

    def with_image(y, k, out, image_y):
        torch.testing.assert_close(image_y, y @ weight.T, rtol=0, atol=1e-12)  # D y, never computed from y
        seen.append(k)
        z_next = step_map(y, k)
        return z_next, z_next @ weight.T
    z0 = torch.zeros(5, 20)
    z, _ = proximal_gradient(with_image, z0, 12, momentum="restart", image=z0 @ weight.T)
    assert seen == list(range(12))
    with pytest.raises(ValueError, match="image"):
        proximal_gradient(with_image, z0, 2, momentum="fista", image=z0 @ weight.T)


def test_momentum_pieces():
    assert fista_momentum(1.0) == pytest.approx((1 + math.sqrt(5)) / 2)
    torch.testing.assert_close(fista_momentum(torch.tensor([1.0, 2.0])),
                               (1 + torch.sqrt(1 + 4 * torch.tensor([1.0, 4.0]))) / 2)
    z, z_next = torch.randn(3, 4), torch.randn(3, 4)
    beta = torch.tensor([0.0, 0.5, 0.9]).reshape(3, 1)
    torch.testing.assert_close(extrapolate(z_next, None, beta, z_next - z), z_next + beta * (z_next - z))
    torch.testing.assert_close(extrapolate(z_next, z, 0.3), z_next + 0.3 * (z_next - z))
    y = torch.randn(3, 4)
    expected = ((y - z_next) * (z_next - z)).sum(dim=1) > 0
    assert torch.equal(gradient_restart(y, z_next, z_next - z), expected)
    for sample in range(3):  # one sample: the dot-product branch
        one = slice(sample, sample + 1)
        assert torch.equal(gradient_restart(y[one], z_next[one], (z_next - z)[one]), expected[one])
    with pytest.raises(ValueError, match="momentum"):
        proximal_gradient(lambda y, k, out: y, z, 2, momentum="heavy-ball")
    with pytest.raises(ValueError, match="inplace"):
        proximal_gradient(lambda y, k, out: y, z.requires_grad_(), 2, inplace=True)


@pytest.mark.parametrize("threshold", [0.3, torch.tensor([0.1, 0.0, 0.5, 0.2])])
def test_prox_family_out_variants_equal_the_out_of_place_ones(threshold):
    u = torch.randn(6, 4) * 0.6
    cases = [(soft_threshold, dict()), (nonneg_soft_threshold, dict()), (hard_threshold, dict()),
             (elastic_net_prox, dict(s=0.4)), (elastic_net_prox, dict(s=0.4, nonneg=True)),
             (elastic_net_prox, dict(s=torch.full((6, 1), 0.2)))]
    for op, kwargs in cases:
        expected = op(u, threshold, **kwargs)
        out = torch.empty_like(u)
        assert op(u, threshold, out=out, **kwargs) is out
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
        scratch = u.clone()
        torch.testing.assert_close(op(scratch, threshold, out=scratch, check=False, **kwargs), expected, rtol=0, atol=0)
    torch.testing.assert_close(elastic_net_prox(u, 0.3), soft_threshold(u, torch.tensor(0.3)), rtol=0, atol=0)
    torch.testing.assert_close(nonneg_soft_threshold(u, 0.0), torch.relu(u), rtol=0, atol=0)
    with pytest.raises(ValueError, match="non-negative"):
        soft_threshold(u, -1.0)
    soft_threshold(u, -1.0, check=False)  # unchecked: the caller vouches for its threshold


def test_power_iteration_converges_to_the_operator_norm_from_below():
    weight, _, _ = _problem(3, n=15, m=25)
    exact = float(torch.linalg.matrix_norm(weight, ord=2) ** 2)
    start = torch.randn(1, 25, generator=torch.Generator().manual_seed(0))
    result = power_iteration(lambda v: v @ weight.T @ weight, start, 500, tol=1e-12)
    assert result.n_iter < 500 and float(result.estimate) <= exact * (1 + 1e-12)
    assert float(result.estimate) == pytest.approx(exact, rel=1e-8)
    warm = power_iteration(lambda v: v @ weight.T @ weight, result.vector, 2)
    assert float(warm.estimate) == pytest.approx(exact, rel=1e-10)  # a warm start needs only a few iterations
    zero = power_iteration(lambda v: 0 * v, start, 5, tol=1e-9)
    assert float(zero.estimate) == 0.0 and zero.n_iter == 1
