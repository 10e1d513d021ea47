r"""The multi-layer basis pursuit (ML-BP) problem of chapter 6 and its solvers.

.. math:: \min_{\Gamma_L}\ F(\Gamma_L) = \tfrac12\|x - D_1\cdots D_L\Gamma_L\|_2^2
          + \sum_{i=1}^L\lambda_i\|\Gamma_i\|_1,
          \qquad \Gamma_i = D_{i+1}\cdots D_L\Gamma_L

(:cite:t:`sulam2020multilayer`; chapter 6, ``eq-ch6-ml-bp``): :func:`ml_fista` (ML-ISTA/ML-FISTA,
nested proximal gradient mappings), :func:`ml_fista_gap_bound` (a computable optimality gap at its
fixed points) and :func:`ml_bp_primal_dual` (a slow but convergent reference solver).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..core.dictionary import ConvDictionary, Dictionary
from ..core.operator_norm import CONVERGED_MARGIN, power_iteration
from ..core.prox import elastic_net_prox
from ..core.validation import check_bool, positive_int, positive_number
from ..solvers.engine import forward_backward, proximal_gradient
from .chain import check_dictionaries, check_lams, check_signal, synthesize_chain

__all__ = ["ml_bp_objective", "ml_fista", "MLFistaResult", "ml_fista_gap_bound", "ml_bp_primal_dual"]


def _shrink(u, t, nonneg):
    # the prox of λ‖·‖₁ (+ the indicator of Γ ≥ 0 if nonneg); λ was checked by check_lams
    return elastic_net_prox(u, t, 0.0, nonneg, check=False)


def _sum_per_sample(t):
    return t.reshape(t.shape[0], -1).sum(dim=1)


def ml_bp_objective(dictionaries: Sequence[Dictionary], x: torch.Tensor, deepest_code: torch.Tensor, lams):
    r"""The multi-layer basis pursuit objective, per sample ``(B,)``.

    .. math:: F(\Gamma_L) = \tfrac12\|x - D_1D_2\cdots D_L\Gamma_L\|_2^2
              + \sum_{i=1}^{L}\lambda_i\|\Gamma_i\|_1,\qquad \Gamma_i = D_{i+1}\cdots D_L\Gamma_L ,

    of :cite:t:`sulam2020multilayer`: one variable (the deepest code), every intermediate code
    penalized through the chain. Implements chapter 6, equation ``eq-ch6-ml-bp``.
    """
    dictionaries = check_dictionaries(dictionaries)
    check_signal(dictionaries, x)
    lams = check_lams(lams, dictionaries)
    expected = _code_shapes(dictionaries, x)[-1]
    if not isinstance(deepest_code, torch.Tensor) or tuple(deepest_code.shape) != tuple(expected):
        raise ValueError(f"deepest_code must be a tensor of shape {tuple(expected)}")
    return _objective(dictionaries, x, deepest_code, lams)


def _objective(dictionaries, x, deepest_code, lams):
    # ml_bp_objective without the argument checks (called once per iteration)
    chain = synthesize_chain(dictionaries, deepest_code, _sizes(dictionaries, x))
    value = 0.5 * _sum_per_sample((x - chain[0]).square())
    for lam, gamma in zip(lams, chain[1:], strict=True):
        value = value + _sum_per_sample(lam * gamma.abs())
    return value


def _sizes(dictionaries, x):
    """Spatial size of Γ_0, ..., Γ_{L-1} (None for dense layers), so every synthesis is exact."""
    if not isinstance(dictionaries[0], ConvDictionary):
        return None
    sizes, shape = [], tuple(x.shape)
    for d in dictionaries:
        sizes.append(shape[2:])
        shape = d.code_shape(shape)
    return sizes


def _code_shapes(dictionaries, x):
    shapes, shape = [], tuple(x.shape)
    for d in dictionaries:
        shape = d.code_shape(shape)
        shapes.append(shape)
    return shapes


def _chain_lipschitz(dictionaries, x, n_iter=300) -> float:
    r""":math:`\|D_1\cdots D_i\|_2^2` by power iteration on :math:`(D_1\cdots D_i)^\top D_1\cdots D_i`.

    The converged estimate of :func:`cscnb.core.operator_norm.power_iteration` with its margin
    (:data:`~cscnb.core.operator_norm.CONVERGED_MARGIN`), which keeps the step admissible.
    """
    sizes = _sizes(dictionaries, x)
    shape = (1,) + _code_shapes(dictionaries, x)[-1][1:]
    start = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(x.dtype)

    def gram(v):
        w = synthesize_chain(dictionaries, v, sizes)[0]
        for d in dictionaries:
            w = d.analyze(w)
        return w
    return float(power_iteration(gram, start, n_iter, tol=1e-10).estimate) * (1 + CONVERGED_MARGIN)


def _gradient_mappings(dictionaries, x, deepest, lams, steps, nonneg):
    r"""Nested proximal gradient mappings :math:`G_0,\dots,G_{L-1}` at the chain of ``deepest``.

    :math:`G_0 = \Gamma_0 - x`; for :math:`i<L`:
    :math:`u_i = \operatorname{prox}_{\mu_i g_i}(\Gamma_i - \mu_i D_i^\top G_{i-1})`,
    :math:`G_i = (\Gamma_i - u_i)/\mu_i`. Returns the chain, the ``u_i`` and the ``G_i``.
    """
    chain = synthesize_chain(dictionaries, deepest, _sizes(dictionaries, x))
    mappings, inner = [chain[0] - x], []
    for i in range(len(dictionaries) - 1):
        gamma, mu = chain[i + 1], steps[i]
        u = _shrink(gamma - mu * dictionaries[i].analyze(mappings[-1]), mu * lams[i], nonneg)
        inner.append(u)
        mappings.append((gamma - u) / mu)
    return chain, inner, mappings


@dataclass
class MLFistaResult:
    """What :func:`ml_fista` returns."""
    codes: list                 # [Γ_1, ..., Γ_L], Γ_i = D_{i+1}⋯D_L Γ_L (the chain of the deepest code)
    inner_codes: list           # [u_1, ..., u_{L-1}, Γ_L]: exactly sparse nested-prox estimates of each layer
    objective: torch.Tensor     # (B,) ml_bp_objective at Γ_L
    history: torch.Tensor       # (k+1, B) objective after each iteration (row 0: the start Γ_L = 0), or (2, B)
    n_iter: int
    converged: bool
    steps: list                 # [μ_1, ..., μ_{L-1}, t]


def ml_fista(dictionaries: Sequence[Dictionary], x: torch.Tensor, lams, *, nonneg: bool = False,
             momentum: bool = True, n_iter: int = 500, tol: float = 1e-9, steps=None,
             history: bool = True) -> MLFistaResult:
    r"""ML-ISTA / ML-FISTA for the multi-layer basis pursuit problem (chapter 6, ``eq-ch6-ml-fista``).

    Targets :math:`\min_{\Gamma_L} \tfrac12\|x - D_1\cdots D_L\Gamma_L\|^2 + \sum_i \lambda_i\|\Gamma_i\|_1`,
    :math:`\Gamma_i = D_{i+1}\cdots D_L\Gamma_L` (``eq-ch6-ml-bp``, :func:`ml_bp_objective`), in the
    proximal-gradient-mapping scheme of :cite:t:`sulam2020multilayer`: the non-smooth inner
    penalties are handled by nested proximal gradient mappings (:math:`G_0 = D_1\Gamma_1 - x`,
    :math:`u_i = \mathcal S_{\mu_i\lambda_i}(\Gamma_i - \mu_iD_i^\top G_{i-1})`,
    :math:`G_i = (\Gamma_i - u_i)/\mu_i`), and the deepest code takes the step

    .. math:: \Gamma_L^{k+1} = \mathcal S_{t\lambda_L}\big(Y^k - t\,D_L^\top G_{L-1}(D_L Y^k)\big),

    with FISTA momentum on :math:`Y^k` if ``momentum`` (ML-FISTA), else :math:`Y^k = \Gamma_L^k`
    (ML-ISTA). ``nonneg`` uses the ReLU prox at every layer; ``history=False`` skips the
    per-iteration objective (``history`` then holds only the start and the end). Default steps:
    :math:`\mu_i = 1/\|D_1\cdots D_i\|_2^2`, :math:`t = 1/\|D_1\cdots D_L\|_2^2`.

    **What is guaranteed** (chapter 6, theorem ``thm-ch6-ml-ista-fixed-point``): with all inner
    :math:`\lambda_i = 0` and signed codes (``nonneg=False``; with ``nonneg`` the ReLU still projects
    the inner layers) the iteration is exactly (F)ISTA with the dictionary :math:`D_1\cdots D_L`;
    in general, at a fixed point, :math:`F(\Gamma_L) - \min F` is at most the computable
    :func:`ml_fista_gap_bound`, which is 0 when the nested prox signs agree with the chain codes. Convergence of the
    iteration itself is not claimed here; ``history`` shows it.
    """
    dictionaries = check_dictionaries(dictionaries)
    check_signal(dictionaries, x)
    lams = check_lams(lams, dictionaries)
    check_bool(nonneg, "nonneg")
    check_bool(momentum, "momentum")
    n_iter = positive_int(n_iter, "n_iter")
    tol = positive_number(tol, "tol")
    steps = _check_steps(steps, dictionaries, x)
    deepest_shape = _code_shapes(dictionaries, x)[-1]
    z = torch.zeros(deepest_shape, dtype=x.dtype, device=x.device)
    t_out = steps[-1]

    def objective(code):
        with torch.no_grad():
            return _objective(dictionaries, x, code, lams).detach()

    keep_history = history
    history = [objective(z)]
    state = {"converged": False}

    def gradient_mapping(y):  # D_Lᵀ G_{L−1}(D_L Y): the nested mappings of eq-ch6-ml-fista
        return dictionaries[-1].analyze(_gradient_mappings(dictionaries, x, y, lams, steps, nonneg)[2][-1])

    # Γ_L ← S_{tλ_L}(Y − t D_Lᵀ G_{L−1})
    step = forward_backward(gradient_mapping, lambda u, eta, out: _shrink(u, eta * lams[-1], nonneg), t_out)

    def monitor(k, z_next, z_prev, delta):
        change = float((z_next - z_prev).norm() / z_prev.norm().clamp_min(torch.finfo(x.dtype).tiny)) \
            if z_prev.norm() > 0 else float((z_next - z_prev).norm() > 0)
        if keep_history:
            history.append(objective(z_next))
        if change < tol:
            state["converged"] = True
            return True
        return None

    z, k = proximal_gradient(step, z, n_iter, momentum="fista" if momentum else "none", monitor=monitor)
    converged = state["converged"]
    chain, inner, _ = _gradient_mappings(dictionaries, x, z, lams, steps, nonneg)
    if not keep_history:
        history.append(objective(z))
    return MLFistaResult(codes=chain[1:], inner_codes=inner + [z], objective=history[-1],
                         history=torch.stack(history), n_iter=k, converged=converged, steps=steps)


def _check_steps(steps, dictionaries, x) -> list:
    n = len(dictionaries)
    if steps is None:
        return [1.0 / _chain_lipschitz(dictionaries[:i + 1], x) for i in range(n)]
    if not isinstance(steps, (list, tuple)) or len(steps) != n:
        raise ValueError(f"steps must list {n} positive step sizes [μ_1, ..., μ_(L-1), t], got {steps!r}")
    return [positive_number(s, f"steps[{i}]") for i, s in enumerate(steps)]


@torch.no_grad()
def ml_fista_gap_bound(dictionaries: Sequence[Dictionary], x: torch.Tensor, deepest_code: torch.Tensor, lams, *,
                       steps=None, nonneg: bool = False):
    r"""A computable bound on :math:`F(\Gamma_L) - \min F` at a fixed point of :func:`ml_fista` (``eq-ch6-gap``).

    From the nested mappings at :math:`\Gamma_L` take :math:`s_i = (G_i - D_i^\top G_{i-1})/\lambda_i`,
    a subgradient of :math:`\|\cdot\|_1` at :math:`u_i` (the nested prox output). Returns
    ``(gap, residual)``, both ``(B,)``:

    .. math:: \text{gap} = \sum_{i<L}\lambda_i\big(\|\Gamma_i\|_1 - \langle s_i, \Gamma_i\rangle\big),\qquad
              \text{residual} = \operatorname{dist}_\infty\big(-D_L^\top G_{L-1},\
              \lambda_L\,\partial\|\Gamma_L\|_1\big).

    Chapter 6, theorem ``thm-ch6-ml-ista-fixed-point``: if ``residual`` is 0 (which holds exactly at
    a fixed point of the iteration) then :math:`F(\Gamma_L) \le \min F + \text{gap}`; the gap vanishes
    when every :math:`u_i` has the signs of :math:`\Gamma_i`. With ``nonneg`` the penalties include
    :math:`\iota_{\ge 0}` and the gap is :math:`+\infty` if a chain code has a negative entry.
    Inner layers need :math:`\lambda_i > 0` (scalar or per-atom).
    """
    dictionaries = check_dictionaries(dictionaries)
    check_signal(dictionaries, x)
    lams = check_lams(lams, dictionaries)
    if any(float(lam.min()) <= 0 for lam in lams[:-1]):
        raise ValueError("ml_fista_gap_bound needs positive lams on the inner layers (s_i divides by λ_i)")
    steps = _check_steps(steps, dictionaries, x)
    chain, _, mappings = _gradient_mappings(dictionaries, x, deepest_code, lams, steps, nonneg)
    gap = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for i in range(len(dictionaries) - 1):
        gamma = chain[i + 1]
        s = (mappings[i + 1] - dictionaries[i].analyze(mappings[i])) / lams[i]
        # s ∈ ∂h(u) makes s an ε-subgradient of h at Γ with ε = h(Γ) − ⟨s, Γ⟩ (because ⟨s, u⟩ = h(u))
        layer_gap = _sum_per_sample(lams[i] * (gamma.abs() - s * gamma))
        if nonneg:
            negative = (gamma < 0).reshape(gamma.shape[0], -1).any(dim=1)
            layer_gap = torch.where(negative, torch.full_like(layer_gap, float("inf")), layer_gap)
        gap = gap + layer_gap
    g = -dictionaries[-1].analyze(mappings[-1])
    z, lam = deepest_code, lams[-1].expand_as(g)
    on = (g - lam * torch.sign(z)).abs()
    off = torch.relu(g - lam) if nonneg else torch.relu(g.abs() - lam)
    residual = torch.where(z != 0, on, off)
    if nonneg:
        residual = torch.maximum(residual, torch.relu(-z))
    return gap, residual.reshape(z.shape[0], -1).amax(dim=1)


def ml_bp_primal_dual(dictionaries: Sequence[Dictionary], x: torch.Tensor, lams, *, nonneg: bool = False,
                      n_iter: int = 5000, tol: float = 1e-10):
    r"""A reference solver for ``eq-ch6-ml-bp``: the primal-dual splitting of Condat and Vũ.

    Writes :math:`F(\Gamma_L) = f(\Gamma_L) + g(\Gamma_L) + \sum_{i<L} h_i(K_i\Gamma_L)` with
    :math:`f = \tfrac12\|x - D_1\cdots D_L\Gamma_L\|^2`, :math:`g = \lambda_L\|\cdot\|_1`,
    :math:`K_i = D_{i+1}\cdots D_L`, :math:`h_i = \lambda_i\|\cdot\|_1` (each :math:`+\,\iota_{\ge 0}` if
    ``nonneg``), and iterates

    .. math:: \Gamma^{k+1} = \operatorname{prox}_{\tau g}\big(\Gamma^k - \tau\nabla f(\Gamma^k)
              - \tau\textstyle\sum_i K_i^\top y_i^k\big),\quad
              y_i^{k+1} = \operatorname{prox}_{\sigma h_i^*}\big(y_i^k + \sigma K_i(2\Gamma^{k+1} - \Gamma^k)\big),

    with :math:`\tau = 1/\|D_1\cdots D_L\|^2` and :math:`\sigma = 0.45/(\tau\sum_i\|K_i\|^2)`, so that
    :math:`1/\tau - \sigma\|K\|^2 > \|D_1\cdots D_L\|^2/2`, the condition under which the iterates
    converge to a minimizer (the problem is convex). The prox of :math:`h_i^*` clips to
    :math:`[-\lambda_i, \lambda_i]` (to :math:`(-\infty, \lambda_i]` if ``nonneg``). Slow, no
    smoothing: chapter 6 uses it only to measure how far :func:`ml_fista` is from the minimum.
    Returns ``(deepest_code, history)`` with ``history`` of shape ``(k+1, B)``.
    """
    dictionaries = check_dictionaries(dictionaries)
    check_signal(dictionaries, x)
    lams = check_lams(lams, dictionaries)
    n_iter = positive_int(n_iter, "n_iter")
    shapes = _code_shapes(dictionaries, x)
    tau = 1.0 / _chain_lipschitz(dictionaries, x)
    norm_k = sum(_chain_lipschitz(dictionaries[i:], torch.zeros((1,) + shapes[i - 1][1:], dtype=x.dtype,
                                                                   device=x.device))
                 for i in range(1, len(dictionaries)))
    sigma = 0.45 / (tau * norm_k) if norm_k > 0 else 1.0
    sizes = _sizes(dictionaries, x)
    z = torch.zeros(shapes[-1], dtype=x.dtype, device=x.device)
    duals = [torch.zeros(s, dtype=x.dtype, device=x.device) for s in shapes[:-1]]
    history = [_objective(dictionaries, x, z, lams)]
    chain = synthesize_chain(dictionaries, z, sizes)
    for _ in range(n_iter):
        w = chain[0] - x  # back-propagate ∇f + Σ K_iᵀ y_i through the adjoints
        for j, d in enumerate(dictionaries[:-1]):
            w = d.analyze(w) + duals[j]
        w = dictionaries[-1].analyze(w)
        z_next = _shrink(z - tau * w, tau * lams[-1], nonneg)
        chain_next = synthesize_chain(dictionaries, z_next, sizes)
        for i in range(len(duals)):
            v = duals[i] + sigma * (2 * chain_next[i + 1] - chain[i + 1])
            duals[i] = torch.minimum(v, lams[i]) if nonneg else torch.clamp(v, -lams[i], lams[i])
        change = float((z_next - z).norm() / z_next.norm().clamp_min(torch.finfo(x.dtype).tiny))
        z, chain = z_next, chain_next
        history.append(_objective(dictionaries, x, z, lams))
        if change < tol:
            break
    return z, torch.stack(history)
