"""CSCLayer (chapter 12): shapes, FISTA shared with solve, gradients vs finite differences,
one step = Conv2d + bias + ReLU, warm-started step size, test-time λ, convert, bad input."""
import pytest
import torch
import torch.nn as nn

from cscnb import ConvDictionary, solve
from cscnb.nn.conversion import convert
from cscnb.nn.csc_layer import CSCLayer, csc_code, test_time_lam, unit_norm_atoms

pytestmark = pytest.mark.usefixtures("float64")  # tests/conftest.py


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 0), (2, 1), (1, 2)])
@pytest.mark.parametrize("size", [8, 9])
def test_output_shape_matches_conv2d(stride, padding, size):
    torch.manual_seed(0)
    x = torch.randn(2, 3, size, size)
    layer = CSCLayer(3, 5, 3, stride=stride, padding=padding)
    conv = nn.Conv2d(3, 5, 3, stride=stride, padding=padding)
    assert layer(x).shape == conv(x).shape


@pytest.mark.parametrize("stride,padding,mu", [(1, 1, 0.0), (2, 1, 0.3)])
def test_layer_iterates_are_solve_fista_iterates(stride, padding, mu):
    # one FISTA implementation: K layer steps equal K steps of cscnb.solve(method="fista")
    torch.manual_seed(1)
    x, w = torch.randn(2, 2, 7, 7), unit_norm_atoms(torch.randn(4, 2, 3, 3))
    d = ConvDictionary(w, stride=stride, padding=padding)
    L = d.lipschitz_constant((7, 7))
    ref = solve(d, x, 0.2, method="fista", nonneg=True, mu=mu, n_iter=7, tol=1e-300).z
    z = csc_code(x, w, 0.2, mu=mu, step=1 / L, n_iter=7, stride=stride, padding=padding)
    torch.testing.assert_close(z, ref, rtol=0, atol=1e-12)


def test_one_step_from_zero_is_conv2d_bias_relu():
    torch.manual_seed(2)
    layer = CSCLayer(3, 6, 3, stride=2, padding=1, n_iter=1, lam=torch.rand(6), per_channel_lam=True, mu=0.5)
    x = torch.randn(4, 3, 10, 10)
    eta = 1 / layer.lipschitz(x)
    conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
    with torch.no_grad():
        conv.weight.copy_(eta * layer.dictionary_weight())
        conv.bias.copy_(-eta * layer.lam)
    torch.testing.assert_close(layer(x), torch.relu(conv(x)) / (1 + eta * 0.5))


def _directional_fd(f, args, index, direction, eps=1e-6):
    plus, minus = list(args), list(args)
    plus[index] = args[index] + eps * direction
    minus[index] = args[index] - eps * direction
    with torch.no_grad():
        return (f(*plus) - f(*minus)) / (2 * eps)


@pytest.mark.parametrize("backward", ["unroll", "implicit"])
def test_converged_gradients_match_finite_differences(backward):
    torch.manual_seed(3)
    x, w = torch.randn(2, 2, 6, 6), unit_norm_atoms(torch.randn(3, 2, 3, 3))
    lam = torch.tensor([0.3, 0.2, 0.4])
    L = ConvDictionary(w, padding=1).lipschitz_constant((6, 6))
    weights = torch.randn(2, 3, 6, 6)
    # μ > 0 makes the problem strongly convex, so 150 FISTA steps reach the minimizer to ~1e-10
    mu, n_iter = 1.0, 150

    def loss(x_, w_, lam_):
        return (weights * csc_code(x_, w_, lam_, mu=mu, step=1 / L, n_iter=n_iter, padding=1, backward=backward)).sum()
    args = [t.clone().requires_grad_() for t in (x, w, lam)]
    z = csc_code(x, w, lam, mu=mu, step=1 / L, n_iter=n_iter, padding=1)
    z_more = csc_code(x, w, lam, mu=mu, step=1 / L, n_iter=2 * n_iter, padding=1)
    torch.testing.assert_close(z, z_more, rtol=0, atol=1e-10)  # converged
    assert 0.05 < (z > 0).double().mean() < 0.95  # a non-trivial support
    grads = torch.autograd.grad(loss(*args), args)
    for i, (t, g) in enumerate(zip((x, w, lam), grads, strict=True)):
        direction = torch.randn_like(t)
        fd = _directional_fd(loss, [x, w, lam], i, direction)
        torch.testing.assert_close((g * direction).sum(), fd, rtol=1e-5, atol=1e-6)


def test_implicit_gradient_stays_bounded_before_convergence():
    torch.manual_seed(4)
    layer = CSCLayer(3, 16, 3, padding=1, backward="implicit").float()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float32)
    layer(x).sum().backward()
    assert torch.isfinite(layer.weight.grad).all() and layer.weight.grad.abs().max() < 1e6


def test_step_size_refreshes_every_training_step_and_is_cached_otherwise():
    torch.manual_seed(5)
    layer = CSCLayer(3, 8, 3, padding=1, n_iter=2, learnable_lam=True)
    opt = torch.optim.SGD(layer.parameters(), lr=0.05)
    x = torch.randn(8, 3, 10, 10)
    counts = []
    for _ in range(6):
        before = layer.step_size.power_iterations
        loss = (layer(x) - 0.1).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        counts.append(layer.step_size.power_iterations - before)
    assert counts == [50 + 2] + [2] * 5  # a cold start on the first input, then 2 warm iterations per step
    before = layer.step_size.power_iterations
    stored = layer.step_size.vector.clone()
    with torch.no_grad():
        layer(x)
        layer(x)
    layer.eval()
    layer(x)
    assert layer.step_size.power_iterations - before == 2  # computed once for this weight, not stored, then cached
    assert torch.equal(layer.step_size.vector, stored)
    layer.train()
    exact = ConvDictionary(layer.dictionary_weight().detach(), padding=1).lipschitz_constant((10, 10), n_iter=300)
    assert layer.lipschitz(x) >= exact / (1 + 1e-3)  # the margin keeps 1/L a valid FISTA step
    assert layer.refresh_step_size(x) == pytest.approx(1.1 * exact / (1 + 1e-3), rel=1e-3)
    assert layer.refresh_step_size() == layer.refresh_step_size(x)  # default: the last input size
    with pytest.raises(ValueError, match="x_or_size"):
        CSCLayer(3, 8, 3).refresh_step_size()


def test_step_stays_admissible_after_large_optimizer_steps():
    # the warm estimate lags a moving weight. Measured with this setting: eta ||A||^2 <= 0.911 while the atoms
    # move <= 1.5 % per step; with a summed loss (atoms moving 21 % / 57 % per step) it reached 1.06 / 1.6
    torch.manual_seed(8)
    layer = CSCLayer(3, 16, 3, padding=1)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5, momentum=0.9)
    x, target = torch.randn(4, 3, 12, 12), torch.rand(4, 16, 12, 12)
    worst = 0.0
    for _ in range(15):
        loss = (layer(x) - target).square().mean()
        eta = layer.step_factor / float(layer.step_size.estimate)
        exact = ConvDictionary(layer.dictionary_weight().detach(), padding=1).lipschitz_constant((12, 12),
                                                                                                 n_iter=500)
        worst = max(worst, eta * exact / (1 + 1e-3))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert worst < 0.95  # the factor 1/1.1 = 0.909 plus what the two warm iterations miss


def test_lam_setter_and_test_time_lam_restore_even_on_error():
    model = nn.Sequential(CSCLayer(1, 2, 3), nn.ReLU(), CSCLayer(2, 3, 3, per_channel_lam=True, lam=[0.1, 0.2, 0.3],
                                                               learnable_lam=True))
    model[0].lam = 0.25
    assert float(model[0].lam) == 0.25
    with test_time_lam(model, 0.7):
        assert float(model[0].lam) == 0.7 and torch.equal(model[2].lam, torch.full((3,), 0.7))
    with pytest.raises(RuntimeError, match="boom"), test_time_lam(model, 1.5):
        raise RuntimeError("boom")
    assert float(model[0].lam) == 0.25
    torch.testing.assert_close(model[2].lam.detach(), torch.tensor([0.1, 0.2, 0.3]))
    assert isinstance(model[2].lam_param, nn.Parameter)


def test_larger_lam_gives_sparser_codes():
    torch.manual_seed(6)
    layer, x = CSCLayer(3, 8, 3, n_iter=5, lam=0.05), torch.randn(2, 3, 8, 8)
    dense = (layer(x) > 0).double().mean()
    layer.lam = 0.5
    assert (layer(x) > 0).double().mean() < dense


def test_convert_nested_model():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                          nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(6)),
                          nn.Conv2d(6, 2, 1))
    x = torch.randn(2, 1, 9, 9)
    shape = model(x).shape
    w = model[2][0].weight.detach().clone()
    convert(model, select=lambda name, m: m.stride == (2, 2), n_iter=3, lam=0.2)
    assert isinstance(model[2][0], CSCLayer) and isinstance(model[0], nn.Conv2d)
    assert model[2][0].n_iter == 3 and torch.equal(model[2][0].weight.detach(), w)
    assert model(x).shape == shape
    assert convert(model) is model and sum(isinstance(m, CSCLayer) for m in model.modules()) == 3
    assert model(x).shape == shape
    by_name = convert(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)), select="1")
    assert isinstance(by_name[1], CSCLayer) and isinstance(by_name[0], nn.Conv2d)


def test_convert_rejects_unsupported_convolutions():
    with pytest.raises(ValueError, match="groups"):
        convert(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)))
    with pytest.raises(ValueError, match="dilation"):
        convert(nn.Sequential(nn.Conv2d(4, 4, 3, dilation=2)))
    with pytest.raises(TypeError, match="select"):
        convert(nn.Sequential(nn.Conv2d(4, 4, 3)), select=3)
    with pytest.raises(TypeError, match="model"):
        convert("not a model")


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(backward="magic"), ValueError, "backward"),
    (dict(lam=-0.1), ValueError, "lam"),
    (dict(n_iter=0), ValueError, "n_iter"),
    (dict(n_iter=2.5), TypeError, "n_iter"),
    (dict(per_channel_lam=True, lam=[0.1, 0.2]), ValueError, "out_channels"),
    (dict(mu=-1.0), ValueError, "mu"),
    (dict(bias=True), ValueError, "bias"),
    (dict(groups=2), ValueError, "groups"),
])
def test_bad_input_names_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        CSCLayer(4, 3, 3, **kwargs)


def test_bad_forward_and_setter_input():
    layer = CSCLayer(2, 3, 3)
    with pytest.raises(ValueError, match="x must have shape"):
        layer(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="lam"):
        layer.lam = -1.0
    with pytest.raises(TypeError, match="model"), test_time_lam(layer.weight, 0.1):
        pass


# ---------------------------------------------------------------------------------------------
# the fast path: exact synthesis forms, the fused step, buffer reuse, λ checked once per forward

from cscnb import elastic_net_prox  # noqa: E402
from cscnb.nn.csc_ops import SYNTHESES, FusedProxGrad, fastest_synthesis, resolve_synthesis, synthesis_operator  # noqa: E402
from cscnb.profiling.timers import csc_layer_floor, interleaved_times, layer_costs, step_size_share  # noqa: E402
from cscnb.solvers import fista_steps  # noqa: E402


@pytest.mark.parametrize("kernel,stride,padding,size", [
    (3, 1, 0, (9, 8)), (3, 1, 1, (8, 8)), (3, 1, 2, (7, 9)), (5, 1, 2, (10, 10)), (2, 1, 1, (6, 7)),
    (3, 2, 1, (9, 9)), (3, 2, 1, (10, 10)), (3, 2, 0, (11, 8)), (3, 1, 3, (6, 6))])
def test_every_synthesis_form_equals_conv_dictionary_synthesize(kernel, stride, padding, size):
    torch.manual_seed(10)
    w = torch.randn(5, 3, kernel, kernel)
    d = ConvDictionary(w, stride=stride, padding=padding)
    z = torch.randn(d.code_shape((2, 3, *size)))
    reference = d.synthesize(z, output_size=size)
    available = [k for k in SYNTHESES if k == "conv_transpose2d" or (stride == 1 and padding <= kernel - 1)]
    for kind in available:
        out = synthesis_operator(w, (stride, stride), (padding, padding), size, kind)(z)
        torch.testing.assert_close(out, reference, rtol=0, atol=1e-12)
    if "conv2d" not in available:
        with pytest.raises(ValueError, match="kind='conv2d'"):
            synthesis_operator(w, (stride, stride), (padding, padding), size, "conv2d")
        assert fastest_synthesis(w, (stride, stride), (padding, padding), size, z.shape) == "conv_transpose2d"
    else:
        assert fastest_synthesis(w, (stride, stride), (padding, padding), size, z.shape) in SYNTHESES


def test_synthesis_auto_is_a_fixed_form_and_timing_only_on_request():
    # "auto" never times (rounding, hence trained weights, must not depend on the machine's load)
    w, size, code = torch.randn(6, 3, 3, 3), (7, 8), (2, 6, 7, 8)
    assert resolve_synthesis("auto", w, (1, 1), (1, 1), size, code) == "conv_transpose2d"
    assert resolve_synthesis("conv2d", w, (1, 1), (1, 1), size, code) == "conv2d"
    assert resolve_synthesis("timed", w, (1, 1), (1, 1), size, code) in SYNTHESES
    with pytest.raises(ValueError, match="synthesis='conv2d'"):
        CSCLayer(3, 6, 3, stride=2, synthesis="conv2d")


def test_deterministic_mode_fixes_the_synthesis_form_and_the_layer_runs_under_it():
    # a choice made by timing may differ between processes; deterministic runs must not depend on it
    w, size = torch.randn(6, 3, 3, 3), (7, 8)
    code = (2, 6, 7, 8)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert fastest_synthesis(w, (1, 1), (1, 1), size, code) == "conv_transpose2d"
        assert fastest_synthesis(w, (1, 1), (1, 1), size, code, backward=True) == "conv_transpose2d"
        torch.manual_seed(3)
        layer = CSCLayer(3, 6, 3, padding=1, n_iter=4, synthesis="timed").eval()
        x = torch.randn(2, 3, 7, 8)
        assert torch.equal(layer(x), CSCLayer.forward(layer, x))
    finally:
        torch.use_deterministic_algorithms(previous)


@pytest.mark.parametrize("nonneg,mu,lam_kind,synthesis,stride", [
    (True, 0.0, "scalar", "conv2d", 1), (True, 0.4, "channel", "conv_transpose2d", 1), (True, 0.0, "full", "conv2d", 1),
    (False, 0.3, "channel", "conv2d", 1), (True, 0.2, "channel", "conv_transpose2d", 2), (False, 0.0, "scalar",
                                                                                           "conv_transpose2d", 2)])
def test_fused_map_equals_the_textbook_prox_gradient_step(nonneg, mu, lam_kind, synthesis, stride):
    torch.manual_seed(11)
    x, w = torch.randn(2, 3, 9, 9), unit_norm_atoms(torch.randn(4, 3, 3, 3))
    d = ConvDictionary(w, stride=stride, padding=1)
    y = torch.randn(d.code_shape(x.shape))
    lam = {"scalar": torch.tensor(0.3), "channel": torch.rand(4), "full": torch.rand(y.shape[1:])}[lam_kind]
    lam_map = lam.reshape(-1, 1, 1) if lam.ndim == 1 else lam
    eta = 1 / d.lipschitz_constant((9, 9))
    fused = FusedProxGrad(x, w, lam, eta, mu, nonneg, (stride, stride), (1, 1), synthesis)

    def textbook(v):  # prox_{ηg}(v − η Aᵀ(Av − x))
        gradient = d.analyze(d.synthesize(v, output_size=(9, 9)) - x)
        return elastic_net_prox(v - eta * gradient, eta * lam_map, eta * mu, nonneg)
    torch.testing.assert_close(fused(y.clone()), textbook(y), rtol=0, atol=1e-12)
    torch.testing.assert_close(fused.first(), textbook(torch.zeros_like(y)), rtol=0, atol=1e-12)


def test_fista_steps_shortcuts_give_the_same_iterates():
    # `first` (T(z0) given) and `overwrite` (buffer reuse without autograd) change no iterate
    torch.manual_seed(12)
    x, w = torch.randn(2, 2, 8, 8), unit_norm_atoms(torch.randn(3, 2, 3, 3))
    fused = FusedProxGrad(x, w, torch.tensor(0.1), 0.2, 0.0, True, (1, 1), (1, 1), "conv2d")
    z0 = torch.zeros(2, 3, 8, 8)
    for k in (1, 2, 3, 7):
        reference = fista_steps(fused, z0, k)
        with torch.no_grad():
            fast = fista_steps(fused, z0, k, first=fused.first(), overwrite=True)
        torch.testing.assert_close(fast, reference, rtol=0, atol=1e-13)
    assert torch.equal(z0, torch.zeros_like(z0))  # the caller's z0 is never overwritten
    with pytest.raises(ValueError, match="overwrite"):
        fista_steps(fused, z0.requires_grad_(), 3, overwrite=True)


@pytest.mark.parametrize("stride,synthesis", [(1, "conv2d"), (1, "conv_transpose2d"), (2, "auto")])
def test_unrolled_gradients_equal_autograd_through_solve(stride, synthesis):
    # the in-place fused step is autograd-correct: same gradients as differentiating cscnb.solve's FISTA
    torch.manual_seed(13)
    x, w, lam = torch.randn(2, 3, 9, 9), torch.randn(5, 3, 3, 3), torch.rand(5) * 0.3
    leaves = [t.clone().requires_grad_() for t in (x, w, lam)]
    loss_weights = torch.randn(ConvDictionary(w, stride=stride, padding=1).code_shape(x.shape))
    atoms = unit_norm_atoms(leaves[1])
    L = ConvDictionary(atoms.detach(), stride=stride, padding=1).lipschitz_constant((9, 9))
    z = csc_code(leaves[0], atoms, leaves[2], mu=0.1, step=1 / L, n_iter=4, stride=stride, padding=1,
                 synthesis=synthesis)
    grads = torch.autograd.grad((loss_weights * z).sum(), leaves)
    ref_leaves = [t.clone().requires_grad_() for t in (x, w, lam)]
    ref_dict = ConvDictionary(unit_norm_atoms(ref_leaves[1]), stride=stride, padding=1)
    ref_dict.lipschitz_constant = lambda *args, **kwargs: L  # the same step for both
    ref = solve(ref_dict, ref_leaves[0], ref_leaves[2], nonneg=True, mu=0.1, n_iter=4, tol=1e-300).z
    torch.testing.assert_close(z, ref, rtol=0, atol=1e-12)
    ref_grads = torch.autograd.grad((loss_weights * ref).sum(), ref_leaves)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_implicit_forward_equals_unrolled_forward():
    torch.manual_seed(14)
    layer, x = CSCLayer(3, 6, 3, padding=1, n_iter=6, mu=0.2).eval(), torch.randn(2, 3, 8, 8)
    unrolled = layer(x)
    layer.backward = "implicit"
    torch.testing.assert_close(layer(x), unrolled, rtol=0, atol=1e-13)


@pytest.mark.parametrize("bad", [float("nan"), -0.2])
def test_lam_is_checked_when_set_and_by_csc_code(bad):
    layer, x = CSCLayer(2, 3, 3, per_channel_lam=True, lam=[0.1, 0.2, 0.3]), torch.randn(1, 2, 6, 6)
    with pytest.raises(ValueError, match="lam"):
        layer.lam = [0.1, bad, 0.1]
    with pytest.raises(ValueError, match="lam"), test_time_lam(layer, bad):
        pass
    with pytest.raises(ValueError, match="lam"):
        CSCLayer(2, 3, 3, lam=bad)
    torch.testing.assert_close(layer.lam, torch.tensor([0.1, 0.2, 0.3]))  # unchanged by the failed sets
    w = unit_norm_atoms(torch.randn(3, 2, 3, 3))
    with pytest.raises(ValueError, match="lam"):
        csc_code(x, w, torch.tensor([0.1, bad, 0.1]), step=0.1, n_iter=2)
    with pytest.raises(ValueError, match="lam"):
        csc_code(x, w, bad, step=0.1, n_iter=2)
    with pytest.raises(ValueError, match="lam"):
        csc_code(x, w, torch.tensor([0.1, 0.2]), step=0.1, n_iter=2)  # wrong length
    with pytest.raises(ValueError, match="synthesis"):
        CSCLayer(2, 3, 3, synthesis="fft")


def test_cost_floor_and_timing_helpers():
    assert csc_layer_floor(2.0, 3.0, 1) == 2.0 and csc_layer_floor(2.0, 3.0, 5) == 5 * 2.0 + 4 * 3.0
    with pytest.raises(ValueError, match="n_iter"):
        csc_layer_floor(1.0, 1.0, 0)
    calls = {"a": lambda: None, "b": lambda: None}
    times = interleaved_times(calls, repeats=3)
    assert set(times) == {"a", "b"} and all(len(v) == 3 and min(v) >= 0 for v in times.values())
    with pytest.raises(ValueError, match="repeats"):
        interleaved_times(calls, repeats=0)
    torch.manual_seed(15)
    layer, x = CSCLayer(2, 4, 3, padding=1, n_iter=3).float(), torch.randn(2, 2, 8, 8, dtype=torch.float32)
    for backward in (False, True):
        costs = layer_costs(layer, x, (1, 2), repeats=2, backward=backward)
        assert layer.n_iter == 3  # restored
        assert set(costs["primitives"]) == {"analysis", "synthesis_conv2d", "synthesis_conv_transpose2d"}
        for k, row in costs["per_n_iter"].items():
            expected_floor = csc_layer_floor(costs["t_analysis"], costs["t_synthesis"], k)
            assert row["floor"] == pytest.approx(expected_floor) and row["ratio_to_floor"] == pytest.approx(
                row["layer"] / row["floor"])
    share = step_size_share(layer, x.requires_grad_(), n_steps=3)
    assert share["power_iterations_per_step"] == [2, 2, 2] and 0 < share["share"] < 1
