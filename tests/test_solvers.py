"""solve / objective / kkt_residual: optimality, textbook rates, agreement with scikit-learn, autograd."""
import math

import pytest
import torch

import cscnb

DTYPE = torch.float64


def dense_problem(seed=0, batch=6, n=12, m=20):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, m, generator=gen, dtype=DTYPE)
    w = w / w.norm(dim=0)
    x = torch.randn(batch, n, generator=gen, dtype=DTYPE)
    return cscnb.LinearDictionary(w), x


def conv_problem(seed=0, batch=2):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(4, 2, 3, 3, generator=gen, dtype=DTYPE) / 3
    x = torch.randn(batch, 2, 7, 8, generator=gen, dtype=DTYPE)
    return cscnb.ConvDictionary(w, stride=2, padding=1), x


def independent_kkt(dictionary, x, z, lam, mu, nonneg):
    """Optimality violation from autograd's gradient of ½‖x − Dz‖² (not from dictionary.analyze)."""
    z = z.detach().requires_grad_(True)
    loss = 0.5 * (x - dictionary.synthesize(z, output_size=dictionary.signal_size(x))).square().sum()
    (grad,) = torch.autograd.grad(loss, z)
    g = -grad - mu * z.detach()
    z = z.detach()
    lam = torch.as_tensor(lam, dtype=DTYPE)
    if lam.ndim == 1:
        lam = lam.reshape(-1, *([1] * (z.ndim - 2)))
    lam = lam.expand_as(z)
    on = (g - lam * torch.sign(z)).abs()
    off = torch.relu(g - lam) if nonneg else torch.relu(g.abs() - lam)
    worst = torch.where(z != 0, on, off)
    if nonneg:
        assert (z >= 0).all()
    return float(worst.max())


KKT_CASES = [
    # (problem, lam, mu, nonneg, method, polish)
    ("dense", 0.3, 0.0, False, "fista", False),
    ("dense", 0.3, 0.0, True, "fista", False),
    ("dense", "per-atom", 0.2, False, "fista", False),
    ("dense", "per-atom", 0.2, True, "ista", False),
    ("dense", 0.3, 0.0, False, "fista_restart", False),
    ("dense", "per-atom", 0.1, True, "fista_restart", True),
    ("dense", 0.3, 0.0, False, "fista_restart", True),
    ("conv", 0.6, 0.0, False, "fista", False),
    ("conv", "per-atom", 0.1, True, "fista", False),
    ("conv", 0.2, 0.1, False, "fista_restart", False),
]


@pytest.mark.parametrize("kind,lam,mu,nonneg,method,polish", KKT_CASES)
def test_solution_satisfies_kkt(kind, lam, mu, nonneg, method, polish):
    dictionary, x = dense_problem() if kind == "dense" else conv_problem()
    if lam == "per-atom":
        lam = torch.linspace(0.05, 0.5, dictionary.n_atoms, dtype=DTYPE)
    options = {"polish": True} if polish else {}
    result = cscnb.solve(dictionary, x, lam, mu=mu, nonneg=nonneg, method=method, tol=1e-10, n_iter=20_000,
                         **options)
    assert result.converged
    assert (result.z != 0).any(), "a test problem whose solution is zero checks little"
    assert float(cscnb.kkt_residual(dictionary, x, result.z, lam, mu=mu, nonneg=nonneg).max()) < 1e-6
    assert independent_kkt(dictionary, x, result.z, lam, mu, nonneg) < 1e-6


def test_kkt_residual_detects_a_non_solution():
    dictionary, x = dense_problem()
    z = cscnb.solve(dictionary, x, 0.3, tol=1e-12, n_iter=20_000).z
    assert float(cscnb.kkt_residual(dictionary, x, z + 0.01, 0.3).min()) > 1e-3


@pytest.mark.parametrize("nonneg", [False, True])
def test_kkt_residual_equals_an_independent_computation(nonneg):
    """On codes that are NOT optimal (random sparse, zero), both on- and off-support terms must count."""
    dictionary, x = dense_problem(seed=15)
    gen = torch.Generator().manual_seed(15)
    lam = torch.linspace(0.05, 0.5, dictionary.n_atoms, dtype=DTYPE)
    random_sparse = torch.randn(x.shape[0], dictionary.n_atoms, generator=gen, dtype=DTYPE)
    random_sparse = random_sparse * (torch.rand(random_sparse.shape, generator=gen) < 0.2)
    for z in (random_sparse.abs() if nonneg else random_sparse, torch.zeros_like(random_sparse)):
        got = cscnb.kkt_residual(dictionary, x, z, lam, nonneg=nonneg)
        for b in range(x.shape[0]):
            expected = independent_kkt(dictionary, x[b:b + 1], z[b:b + 1], lam, 0.0, nonneg)
            assert float(got[b]) == pytest.approx(expected, rel=1e-12, abs=1e-14)


def test_restart_is_faster_than_textbook_fista():
    """O'Donoghue–Candès restart: the same tolerance in far fewer iterations (a wrong restart test fails)."""
    dictionary, x = dense_problem(seed=13, batch=8, n=20, m=40)
    fast = cscnb.solve(dictionary, x, 0.1, method="fista_restart", tol=1e-10, n_iter=5000)
    assert fast.converged
    textbook = cscnb.solve(dictionary, x, 0.1, method="fista", tol=1e-10, n_iter=3 * fast.n_iter)
    assert not textbook.converged, "restart should need less than a third of FISTA's iterations here"
    assert float(((fast.objective - textbook.objective) / textbook.objective).max()) < 1e-9


@pytest.mark.parametrize("method", ["ista", "fista"])
def test_textbook_rate_holds_at_every_iteration(method):
    """ISTA: F(z_k) − F* ≤ L‖z₀ − z*‖²/(2k);  FISTA: F(z_k) − F* ≤ 2L‖z₀ − z*‖²/(k+1)²  (z₀ = 0)."""
    dictionary, x = dense_problem(seed=1, batch=4, n=10, m=30)
    lam = 0.1
    star = cscnb.solve(dictionary, x, lam, method="fista", tol=1e-14, n_iter=50_000)
    f_star = cscnb.objective(dictionary, x, star.z, lam)
    L = dictionary.lipschitz_constant()
    n_iter = 300
    run = cscnb.solve(dictionary, x, lam, method=method, n_iter=n_iter, tol=1e-300, history=True)
    assert run.n_iter == n_iter
    k = torch.arange(1, n_iter + 1, dtype=DTYPE).unsqueeze(1)
    distance = star.z.square().sum(dim=1)
    bound = L * distance / (2 * k) if method == "ista" else 2 * L * distance / (k + 1) ** 2
    gap = run.history.objective[1:] - f_star
    assert (gap <= bound + 1e-12).all(), f"rate violated at iterations {torch.nonzero(gap > bound + 1e-12)[:5]}"
    if method == "ista":  # ISTA is a descent method
        assert (run.history.objective[1:] <= run.history.objective[:-1] + 1e-12).all()
    # the bound must bind: slow convergence (e.g. a step 10x too small) would break it for some k
    assert float(gap[0].min()) > 0.05 * float(bound[0].min())


def test_textbook_fista_is_not_restarted():
    """The default FISTA iterates follow Beck–Teboulle momentum exactly (chapter 5 checks them)."""
    dictionary, x = dense_problem(seed=2, batch=1)
    lam, L = 0.2, dictionary.lipschitz_constant()
    W = dictionary.weight
    z = y = torch.zeros(1, dictionary.n_atoms, dtype=DTYPE)
    t = 1.0
    for _ in range(25):
        u = y - (y @ W.T - x) @ W / L
        z_next = u - u.clamp(-lam / L, lam / L)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        y, z, t = z_next + (t - 1) / t_next * (z_next - z), z_next, t_next
    got = cscnb.solve(dictionary, x, lam, method="fista", n_iter=25, tol=1e-300).z
    torch.testing.assert_close(got, z, rtol=0, atol=1e-13)


def test_matches_scikit_learn_lasso():
    linear_model = pytest.importorskip("sklearn.linear_model")
    dictionary, x = dense_problem(seed=3, batch=5, n=30, m=50)
    lam = 0.2
    n = x.shape[1]
    lasso = linear_model.Lasso(alpha=lam / n, fit_intercept=False, tol=1e-12, max_iter=100_000)
    lasso.fit(dictionary.weight.numpy(), x.numpy().T)
    z_sklearn = torch.as_tensor(lasso.coef_, dtype=DTYPE)
    for method, options in [("fista", {}), ("fista_restart", {}), ("fista_restart", {"polish": True})]:
        z = cscnb.solve(dictionary, x, lam, method=method, tol=1e-12, n_iter=20_000, **options).z
        ours, theirs = cscnb.objective(dictionary, x, z, lam), cscnb.objective(dictionary, x, z_sklearn, lam)
        assert float(((ours - theirs).abs() / theirs).max()) < 1e-6, method
        torch.testing.assert_close(z, z_sklearn, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", ["ista", "fista", "fista_restart"])
def test_warm_start_at_the_solution_stops_at_once(method):
    dictionary, x = dense_problem(seed=4)
    star = cscnb.solve(dictionary, x, 0.2, tol=1e-13, n_iter=20_000)
    z0 = star.z.clone()
    again = cscnb.solve(dictionary, x, 0.2, method=method, z0=z0, tol=1e-6)
    assert torch.equal(z0, star.z), "solve must not write into the caller's z0"
    assert again.converged and again.n_iter <= 2 if method != "fista_restart" else again.n_iter <= 5
    torch.testing.assert_close(again.z, star.z, rtol=0, atol=1e-9)


def test_history_fields_are_consistent():
    dictionary, x = dense_problem(seed=5)
    result = cscnb.solve(dictionary, x, 0.2, tol=1e-5, history=True)
    h, k, batch = result.history, result.n_iter, x.shape[0]
    assert h.objective.shape == (k + 1, batch)
    assert h.relative_change.shape == (k,) and h.step.shape == (k,)
    zero = torch.zeros(batch, dictionary.n_atoms, dtype=DTYPE)
    torch.testing.assert_close(h.objective[0], cscnb.objective(dictionary, x, zero, 0.2))
    torch.testing.assert_close(h.objective[-1], result.objective)
    torch.testing.assert_close(result.objective, cscnb.objective(dictionary, x, result.z, 0.2))
    assert result.converged and float(h.relative_change[-1]) < 1e-5 <= float(h.relative_change[:-1].min())
    torch.testing.assert_close(h.step, torch.full((k,), 1 / dictionary.lipschitz_constant(), dtype=DTYPE))


def test_nonconverged_run_reports_it():
    dictionary, x = dense_problem(seed=5)
    result = cscnb.solve(dictionary, x, 0.01, n_iter=3, tol=1e-12)
    assert result.n_iter == 3 and not result.converged


def test_gradcheck_through_iterations():
    gen = torch.Generator().manual_seed(6)
    w0 = torch.randn(4, 6, generator=gen, dtype=DTYPE)
    x0 = torch.randn(2, 4, generator=gen, dtype=DTYPE)
    lam0 = torch.tensor([0.1, 0.2, 0.15, 0.05, 0.3, 0.1], dtype=DTYPE)
    # the step 1/L is a constant of the iteration (solve's docstring), so it is held fixed here
    L = cscnb.LinearDictionary(w0).lipschitz_constant() * 1.5

    def coded(w, x, lam):
        dictionary = cscnb.LinearDictionary(w)
        dictionary.lipschitz_constant = lambda *args, **kwargs: L
        for method in ("ista", "fista"):
            yield cscnb.solve(dictionary, x, lam, method=method, n_iter=4, tol=1e-300).z

    def fn(w, x, lam):
        return torch.cat(list(coded(w, x, lam)))
    inputs = tuple(t.clone().requires_grad_(True) for t in (w0, x0, lam0))
    assert fn(*inputs).abs().sum() > 0, "an all-zero code would make the gradient check vacuous"
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7)


def test_polished_code_has_the_analytic_gradient():
    """On a fixed support S: z_S = (D_SᵀD_S)⁻¹(D_Sᵀx − λ s), so dz_S/dx = (D_SᵀD_S)⁻¹D_Sᵀ."""
    dictionary, x = dense_problem(seed=7, batch=1, n=12, m=20)
    x = x.clone().requires_grad_(True)
    z = cscnb.solve(dictionary, x, 0.2, method="fista_restart", polish=True, tol=1e-10).z
    support = (z[0] != 0).nonzero().squeeze(1)
    assert 0 < support.numel() < 12
    d_s = dictionary.weight[:, support]
    expected = torch.linalg.solve(d_s.T @ d_s, d_s.T)  # (|S|, n)
    rows = [torch.autograd.grad(z[0, i], x, retain_graph=True)[0][0] for i in support.tolist()]
    torch.testing.assert_close(torch.stack(rows), expected, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("method", ["fista", "fista_restart"])
def test_float32_and_float64_agree(method):
    dictionary, x = dense_problem(seed=8)
    z64 = cscnb.solve(dictionary, x, 0.2, method=method, tol=1e-10, n_iter=5000).z
    d32 = cscnb.LinearDictionary(dictionary.weight.float())
    r32 = cscnb.solve(d32, x.float(), 0.2, method=method, tol=1e-6, n_iter=5000)
    assert r32.z.dtype == torch.float32 and r32.objective.dtype == torch.float32
    torch.testing.assert_close(r32.z.double(), z64, rtol=0, atol=1e-3)


def test_float32_identification_gives_float64_exact_codes():
    dictionary, x = dense_problem(seed=9, batch=40)
    exact = cscnb.solve(dictionary, x, 0.2, method="fista_restart", polish=True, tol=1e-10)
    fast = cscnb.solve(dictionary, x, 0.2, method="fista_restart", polish=True, tol=1e-10,
                       iterate_dtype=torch.float32)
    assert fast.z.dtype == DTYPE and fast.converged
    assert float(cscnb.kkt_residual(dictionary, x, fast.z, 0.2).max()) < 1e-10
    torch.testing.assert_close(fast.z, exact.z, rtol=0, atol=1e-10)


def test_fista_restart_keeps_sample_order_and_per_sample_lam():
    """Samples leave the shrinking batch at different times; each must come back to its own row."""
    dictionary, x = dense_problem(seed=10, batch=7)
    lam = torch.linspace(0.05, 0.6, 7, dtype=DTYPE).unsqueeze(1).expand(7, dictionary.n_atoms)
    batch = cscnb.solve(dictionary, x, lam, method="fista_restart", polish=True, tol=1e-12).z
    assert independent_kkt(dictionary, x, batch, lam, 0.0, False) < 1e-9
    for i in range(7):
        single = cscnb.solve(dictionary, x[i:i + 1], float(lam[i, 0]), method="fista_restart", polish=True,
                             tol=1e-12).z
        torch.testing.assert_close(batch[i:i + 1], single, rtol=0, atol=1e-10)


def test_per_atom_lam_when_batch_equals_n_atoms():
    """A per-atom λ of length n_atoms must not be read as one λ per sample when B == n_atoms."""
    dictionary, x = dense_problem(seed=12, batch=20, n=12, m=20)
    lam = torch.linspace(0.05, 0.8, 20, dtype=DTYPE)
    for options in ({}, {"polish": True}):
        z = cscnb.solve(dictionary, x, lam, method="fista_restart", tol=1e-12, n_iter=20_000, **options).z
        assert independent_kkt(dictionary, x, z, lam, 0.0, False) < 1e-7, options


def test_other_devices():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here; CPU float32/float64 are covered above")
    dictionary, x = dense_problem(seed=11)
    on_gpu = cscnb.LinearDictionary(dictionary.weight.cuda())
    z = cscnb.solve(on_gpu, x.cuda(), 0.2, tol=1e-10).z
    assert z.device.type == "cuda"
    torch.testing.assert_close(z.cpu(), cscnb.solve(dictionary, x, 0.2, tol=1e-10).z, rtol=0, atol=1e-8)


def test_working_set_pass_finishes_most_samples_exactly():
    """polish=True from z = 0: a support guess plus verified active-set rounds (cscnb.solvers.restart)."""
    dictionary, _ = dense_problem(seed=13, n=20, m=50)
    gen = torch.Generator().manual_seed(13)
    planted = torch.zeros(30, 50, dtype=DTYPE).scatter_(  # 3-sparse codes, as sparse coding assumes
        1, torch.rand(30, 50, generator=gen).argsort(dim=1)[:, :3], torch.randn(30, 3, generator=gen, dtype=DTYPE))
    x = dictionary.synthesize(planted) + 0.01 * torch.randn(30, 20, generator=gen, dtype=DTYPE)
    from cscnb.solvers.restart import _working_set_pass
    done, codes, rest, _ = _working_set_pass(dictionary, x, torch.tensor(0.2, dtype=DTYPE), 0.0, False, 1e-10)
    assert done.numel() >= 27 and done.numel() + rest.numel() == 30, "the pass should finish most samples"
    assert independent_kkt(dictionary, x[done], codes, 0.2, 0.0, False) < 1e-10
    result = cscnb.solve(dictionary, x, 0.2, method="fista_restart", polish=True, tol=1e-10)
    assert result.converged and result.n_iter < 100
    assert independent_kkt(dictionary, x, result.z, 0.2, 0.0, False) < 1e-10
    reference = cscnb.solve(dictionary, x, 0.2, method="fista", tol=1e-13, n_iter=50_000).z
    torch.testing.assert_close(result.z, reference, rtol=0, atol=1e-8)


def test_samples_the_working_set_pass_misses_continue_with_fista():
    """A sample whose minimizer is 0 has no support to polish: FISTA must finish it, in its own row."""
    dictionary, x = dense_problem(seed=14, batch=5)
    x = x.clone()
    x[2] *= 0.2 / float(dictionary.analyze(x[2:3]).abs().max())  # ‖Dᵀx‖∞ = 0.2 < λ: the minimizer is 0
    result = cscnb.solve(dictionary, x, 0.3, method="fista_restart", polish=True, tol=1e-10, n_iter=20_000)
    assert result.n_iter > 0 and result.converged
    assert (result.z[2] == 0).all() and (result.z[[0, 1, 3, 4]] != 0).any(dim=1).all()
    assert independent_kkt(dictionary, x, result.z, 0.3, 0.0, False) < 1e-9


@pytest.mark.parametrize("nonneg,mu,per_atom", [(False, 0.0, False), (True, 0.1, True), (False, 0.2, True)])
def test_fista_polish_path_without_the_working_set_pass(monkeypatch, nonneg, mu, per_atom):
    """The identification iterations + polish stay correct when the working-set pass finishes nobody."""
    monkeypatch.setattr(cscnb.solvers.restart, "WORKING_SET_ROUNDS", 0)
    dictionary, x = dense_problem(seed=15, batch=12)
    lam = torch.linspace(0.05, 0.5, dictionary.n_atoms, dtype=DTYPE) if per_atom else 0.2
    result = cscnb.solve(dictionary, x, lam, mu=mu, nonneg=nonneg, method="fista_restart", polish=True, tol=1e-10,
                         n_iter=20_000, iterate_dtype=torch.float32)
    assert result.n_iter > 0 and result.converged
    assert (result.z != 0).any()
    assert independent_kkt(dictionary, x, result.z, lam, mu, nonneg) < 1e-9


@pytest.mark.parametrize("nonneg,mu,per_atom", [(False, 0.0, False), (True, 0.1, True)])
def test_working_set_guess_on_all_atoms_is_coordinate_descent_to_the_minimizer(nonneg, mu, per_atom):
    """With every atom in the working set and enough sweeps, the guess is the minimizer itself."""
    from cscnb.solvers.restart import _working_set_guess
    dictionary, x = dense_problem(seed=16, batch=6)
    weight = dictionary.weight
    lam = torch.linspace(0.05, 0.5, dictionary.n_atoms, dtype=DTYPE) if per_atom else torch.tensor(0.2, dtype=DTYPE)
    analysis = x @ weight
    guess = _working_set_guess(weight.T @ weight, analysis, lam.expand(analysis.shape), mu, nonneg,
                               dictionary.n_atoms, 500)
    reference = cscnb.solve(dictionary, x, lam, mu=mu, nonneg=nonneg, method="fista", tol=1e-13, n_iter=50_000).z
    torch.testing.assert_close(guess, reference, rtol=0, atol=1e-8)


@pytest.mark.parametrize("polish", [False, True])
def test_a_scalar_lam_receives_its_gradient_through_restarted_fista(polish):
    torch.manual_seed(0)
    weight = torch.randn(20, 30, dtype=torch.float64)
    dictionary = cscnb.LinearDictionary(weight / weight.norm(dim=0, keepdim=True))
    x = torch.randn(3, 20, dtype=torch.float64)
    grads = {}
    for method in ("fista", "fista_restart"):
        lam = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
        cscnb.solve(dictionary, x, lam, method=method, n_iter=5000, tol=1e-12,
              polish=polish and method == "fista_restart").z.sum().backward()
        grads[method] = lam.grad
    assert grads["fista_restart"] is not None
    torch.testing.assert_close(grads["fista_restart"], grads["fista"], rtol=1e-6, atol=0)
