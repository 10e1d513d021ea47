"""CSCLayer in training (chapter 12): bit-exact resume, no host syncs, torch.compile without recompiles,
autocast for both gradients, the authors' atom projection, step-size state in the state_dict."""
import copy
import traceback

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cscnb import ConvDictionary
from cscnb.core.operator_norm import power_iteration
from cscnb.nn.conversion import convert
from cscnb.nn.csc_layer import CSCLayer, frozen_step_size, unit_norm_atoms
from cscnb.nn.csc_ops import conv_gram


def _model(seed, **csc):
    torch.manual_seed(seed)
    return nn.Sequential(CSCLayer(2, 6, 3, padding=1, **csc), nn.BatchNorm2d(6), nn.ReLU(),
                         CSCLayer(6, 4, 3, stride=2, padding=1, learnable_lam=True, per_channel_lam=True, mu=0.1),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def _data():
    generator = torch.Generator().manual_seed(11)
    x = torch.randn(3, 8, 2, 8, 8, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (3, 8), generator=generator)
    return x, y


def _train(model, optimizer, x, y, steps):
    for k in steps:
        loss = F.cross_entropy(model(x[k % len(x)]), y[k % len(y)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _evaluate(model, x):
    model.eval()
    with torch.no_grad():
        model(x[0])
        model(x[1])
    model.train()


@pytest.mark.parametrize("csc", [{}, dict(atom_norm="project", power_iters=3, power_tol=1e-6, step_factor=0.9)])
def test_resume_from_state_dict_reproduces_the_straight_run_bit_for_bit(csc):
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        x, y = _data()
        straight = _model(0, **csc).double()
        opt = torch.optim.SGD(straight.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        _train(straight, opt, x, y, range(3))
        _evaluate(straight, x)
        saved_model, saved_opt = copy.deepcopy(straight.state_dict()), copy.deepcopy(opt.state_dict())
        assert saved_model["0.step_size.vector"].shape == (1, 6, 8, 8)
        _train(straight, opt, x, y, range(3, 4))
        _evaluate(straight, x)
        _train(straight, opt, x, y, range(4, 6))

        resumed = _model(1, **csc).double()  # other initial weights: everything must come from the state_dict
        opt_resumed = torch.optim.SGD(resumed.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        resumed.load_state_dict(saved_model)
        opt_resumed.load_state_dict(saved_opt)
        _train(resumed, opt_resumed, x, y, range(3, 4))
        _evaluate(resumed, x)
        _train(resumed, opt_resumed, x, y, range(4, 6))
    finally:
        torch.use_deterministic_algorithms(previous)
    final, reference = resumed.state_dict(), straight.state_dict()
    assert final.keys() == reference.keys()
    for key in reference:
        assert torch.equal(final[key], reference[key]), key


def test_state_dict_without_step_size_buffers_loads_and_starts_cold():
    layer = CSCLayer(2, 4, 3, padding=1)
    x = torch.randn(2, 2, 7, 7)
    layer(x)
    old = {k: v for k, v in layer.state_dict().items() if not k.startswith("step_size.")}  # an older checkpoint
    fresh = CSCLayer(2, 4, 3, padding=1)
    fresh(torch.randn(1, 2, 5, 5))
    fresh.load_state_dict(old)  # strict: no missing-key error
    assert fresh.step_size.vector.numel() == 0
    before = fresh.step_size.power_iterations
    fresh.eval()
    torch.testing.assert_close(fresh(x), layer.eval()(x), rtol=1e-6, atol=1e-7)
    assert fresh.step_size.power_iterations - before == 50 + 2  # a cold start, then the eval estimate
    other = CSCLayer(2, 4, 3, padding=1)
    other.load_state_dict(layer.state_dict())  # a vector of another shape is taken over, not refused
    assert torch.equal(other.step_size.vector, layer.step_size.vector)


def test_reset_parameters_matches_conv2d_initialisation_and_forgets_the_step():
    torch.manual_seed(3)
    layer = CSCLayer(3, 5, (3, 2), stride=(1, 2), padding=(1, 0), lam=0.2)
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 5, (3, 2), stride=(1, 2), padding=(1, 0), bias=False)
    assert torch.equal(layer.weight, conv.weight)
    layer(torch.randn(1, 3, 6, 6))
    layer.lam = 0.7
    torch.manual_seed(4)
    layer.reset_parameters()
    torch.manual_seed(4)
    conv.reset_parameters()
    assert torch.equal(layer.weight, conv.weight) and float(layer.lam) == pytest.approx(0.2)
    assert layer.step_size.vector.numel() == 0
    with pytest.raises(TypeError, match="stride"):
        CSCLayer(3, 5, 3, stride="2")
    with pytest.raises(ValueError, match="padding"):
        CSCLayer(3, 5, 3, padding=(1, 2, 3))
    for bad in (dict(atom_norm="scale"), dict(step_factor=1.5), dict(step_factor=0), dict(power_iters=0),
                dict(power_tol=-1e-3)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            CSCLayer(3, 5, 3, **bad)


def test_a_data_write_needs_refresh_step_size_and_convert_needs_none():
    torch.manual_seed(5)
    layer = CSCLayer(3, 8, 3, padding=1).eval()
    x = torch.randn(2, 3, 9, 9)
    layer(x)
    with torch.no_grad():
        layer.weight.data.copy_(torch.randn(1, 3, 3, 3).expand(8, 3, 3, 3))  # 8 identical atoms: ‖A‖² = 8x
    exact = ConvDictionary(layer.dictionary_weight().detach(), padding=1).lipschitz_constant((9, 9), n_iter=500)
    assert exact / layer.lipschitz(x) > 2  # documented: .data bypasses the version counter, the cache is stale
    layer.refresh_step_size(x)
    assert 1 / 1.1 - 1e-4 < exact / (1 + 1e-3) / layer.lipschitz(x) < 0.95  # eta ||A||^2 back at the factor
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(layer.weight)
    convert(model).eval()(x)
    assert 1 / 1.1 - 1e-4 < exact / (1 + 1e-3) / model[0].lipschitz(x) < 0.95


def test_atom_projection_leaves_unit_atoms_and_the_reparametrised_output():
    torch.manual_seed(6)
    weight = 3 * torch.randn(6, 2, 3, 3, dtype=torch.float64)
    x = torch.randn(4, 2, 9, 9, dtype=torch.float64)
    projected = CSCLayer(2, 6, 3, padding=1, n_iter=3, atom_norm="project").double()
    reparametrised = CSCLayer(2, 6, 3, padding=1, n_iter=3).double()
    with torch.no_grad():
        projected.weight.copy_(weight)
        reparametrised.weight.copy_(weight)
    torch.testing.assert_close(projected(x), reparametrised(x), rtol=0, atol=1e-12)
    norms = projected.weight.detach().flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(6, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(reparametrised.weight.detach(), weight, rtol=0, atol=0)  # untouched
    # the projection's gradient is the plain gradient w.r.t. the atoms (no tangent-space projection, no 1/‖W‖)
    projected(x).sum().backward()
    atoms = unit_norm_atoms(weight).requires_grad_()
    eta = projected.step_factor / projected.step_size.estimate
    from cscnb.nn.csc_layer import _code
    _code(x, atoms, projected.lam, 0.0, eta, 3, (1, 1), (1, 1), True, "unroll", "conv_transpose2d").sum().backward()
    torch.testing.assert_close(projected.weight.grad, atoms.grad, rtol=1e-10, atol=1e-12)
    projected.eval()
    with torch.no_grad():
        projected.weight.mul_(2)
    scaled = projected.weight.detach().clone()
    projected(x)
    assert torch.equal(projected.weight.detach(), scaled)  # eval mode never writes the weight


def test_power_tol_on_the_device_matches_the_host_side_stop():
    torch.manual_seed(7)
    atoms = unit_norm_atoms(torch.randn(8, 3, 3, 3, dtype=torch.float64))
    gram = conv_gram(atoms, (1, 1), (1, 1), (10, 10))
    start = torch.randn(1, 8, 10, 10, dtype=torch.float64)
    host = power_iteration(gram, start, 200, tol=1e-5)
    device = power_iteration(gram, start, 200, tol=1e-5, on_device=True)
    assert host.n_iter < 200 and device.n_iter == 200
    assert torch.equal(device.estimate, host.estimate) and torch.equal(device.vector, host.vector)


def _count_host_reads(monkeypatch, calls):
    def counting(name, original):
        def wrapper(self, *args, **kwargs):
            stack = traceback.extract_stack(limit=40)[:-1]
            if any("/cscnb/" in frame.filename.replace("\\", "/") for frame in stack):
                calls.append((name, stack[-1].filename, stack[-1].lineno))
            return original(self, *args, **kwargs)
        return wrapper
    for name in ("__bool__", "__float__", "__int__", "__index__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))


def test_a_training_step_reads_nothing_back_from_the_device(monkeypatch):
    torch.manual_seed(8)
    model = nn.Sequential(CSCLayer(3, 8, 3, padding=1, learnable_lam=True, per_channel_lam=True, power_tol=1e-5),
                          nn.BatchNorm2d(8),
                          CSCLayer(8, 8, 3, stride=2, padding=1, mu=0.2, atom_norm="project", step_factor=0.9),
                          CSCLayer(8, 4, 3, padding=1, nonneg=False, synthesis="conv2d"),
                          nn.Flatten(), nn.Linear(4 * 5 * 5, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(4, 3, 10, 10), torch.tensor([0, 1, 1, 0])
    calls = []
    _count_host_reads(monkeypatch, calls)
    for _ in range(2):  # the first step starts the step sizes cold, the second is a steady step
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        model(x)
    assert calls == []


def test_compiled_training_compiles_once():
    torch._dynamo.reset()
    graphs = []

    def counting_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward
    torch.manual_seed(9)
    model = nn.Sequential(CSCLayer(3, 8, 3, padding=1, learnable_lam=True), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 8 * 8, 2))
    eager = copy.deepcopy(model)
    compiled = torch.compile(model, backend=counting_backend)
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (compiled, eager)]
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 1, 0])
    after_first = None
    try:
        for step in range(5):
            for net, optimizer in zip((compiled, eager), optimizers, strict=True):
                loss = F.cross_entropy(net(x + 0.1 * step), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if step == 0:
                after_first = len(graphs)
    finally:
        torch._dynamo.reset()
    assert after_first > 0 and len(graphs) == after_first  # no recompilation after the first step
    for p, q in zip(model.parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(model[0].step_size.vector, eager[0].step_size.vector, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backward", ["unroll", "implicit"])
def test_bfloat16_autocast_runs_both_gradients(backward):
    # 20 steps with mu > 0 (a nearly converged code, where the implicit gradient is the one of the fixed point,
    # so both precisions differentiate the same support) and positive loss weights (no cancellation that
    # bf16 sums would amplify): measured relative gradient errors 0.4-3.6 %
    torch.manual_seed(10)
    layer = CSCLayer(3, 8, 3, padding=1, n_iter=20, mu=0.5, backward=backward, learnable_lam=True)
    twin = copy.deepcopy(layer)
    x = torch.randn(4, 3, 12, 12)
    weights = torch.rand(4, 8, 12, 12)
    reference = layer(x)
    (weights * reference).sum().backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = twin(x)
    assert out.dtype == torch.bfloat16
    (weights * out.float()).sum().backward()
    reference = reference.detach()
    assert float((out.detach().float() - reference).norm() / reference.norm()) < 0.03
    for p, q in zip(twin.parameters(), layer.parameters(), strict=True):
        assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
        relative = float((p.grad - q.grad).norm() / q.grad.norm())
        assert relative < 0.08, relative


def test_frozen_step_size_runs_no_power_iteration():
    layer, x = CSCLayer(2, 4, 3, padding=1), torch.randn(2, 2, 6, 6)
    layer(x)
    before, stored = layer.step_size.power_iterations, layer.step_size.estimate.clone()
    with frozen_step_size(layer):
        layer(x).sum().backward()
        assert layer.lipschitz(x) == pytest.approx(float(stored) / layer.step_factor)
    assert layer.step_size.power_iterations == before
    layer(x)
    assert layer.step_size.power_iterations == before + 2
    with pytest.raises(ValueError, match="CSCLayer"), frozen_step_size(nn.Linear(2, 2)):
        pass
