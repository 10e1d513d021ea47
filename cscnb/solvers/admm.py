r"""ADMM in the Fourier domain for circular convolutional sparse coding (method ``"admm_fourier"``).

The problem of :func:`cscnb.solve`, split as :math:`z = y`,

.. math:: \min_{z, y}\ \tfrac12\|x - Dz\|_2^2 + \sum_i\lambda_i|y_i| + \tfrac{\mu}{2}\|y\|_2^2
          \quad\text{s.t. } z = y \quad(y \ge 0 \text{ if } \texttt{nonneg}),

by the scaled-form ADMM of Boyd et al. (2011) with over-relaxation :math:`\alpha`:

.. math:: z^{k+1} = (D^\top D + \rho I)^{-1}\big(D^\top x + \rho(y^k - u^k)\big),\quad
          r = \alpha z^{k+1} + (1-\alpha)y^k,\quad
          y^{k+1} = \operatorname{prox}_{g/\rho}(r + u^k),\quad u^{k+1} = u^k + r - y^{k+1}.

For a circular dictionary (:mod:`cscnb.solvers.fourier`) :math:`D^\top D + \rho I` is block diagonal in
the Fourier domain: one :math:`M \times M` matrix :math:`\hat H^{\mathsf H}\hat H + \rho I` per
frequency, inverted by the Woodbury identity
:math:`(\hat H^{\mathsf H}\hat H + \rho I)^{-1} b =
\big(b - \hat H^{\mathsf H}(\rho I + \hat H\hat H^{\mathsf H})^{-1}\hat H b\big)/\rho`,
a scalar division for one channel (Sherman–Morrison). This is the algorithm of Wohlberg (2016,
"Efficient algorithms for convolutional sparse representations"), written here from the formulas
above; :math:`\rho` is adapted by residual balancing (Boyd et al., 2011, §3.4.1; Wohlberg, 2015).
Benchmark path (``benchmarks/bench_solvers.py``) for the convolutional sparse-coding model of
chapter 3 (``eq-ch3-csc``).
"""
from __future__ import annotations

import torch

from ..core.prox import elastic_net_prox
from .fourier import FourierConvOperator

__all__ = ["fourier_admm"]

RELAXATION = 1.8        # α: over-relaxation, 1.5–1.8 is the usual range (Boyd et al., 2011, §3.4.3)
BALANCE_PERIOD = 5      # iterations between ρ updates (5 or 1 need ~20 % fewer iterations than 10 here)
BALANCE_RATIO = 1.2     # rebalance when one normalised residual exceeds the other by this factor
MAX_RHO_FACTOR = 100.0  # largest single change of ρ


def _norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


class _ShiftedInverse:
    r""":math:`b \mapsto (\hat H^{\mathsf H}\hat H + \rho I)^{-1}b` per frequency and sample (Woodbury)."""

    def __init__(self, op: FourierConvOperator):
        self.op = op
        spectra = op.spectra                                        # (M, C, *freq)
        if op.in_channels == 1:
            self.energy = spectra[:, 0].abs().square().sum(dim=0)   # Σ_m |ĥ_m(ω)|², (*freq)
        else:
            per_freq = spectra.flatten(2).permute(2, 1, 0)          # (F, C, M)
            self.small_gram = per_freq @ per_freq.conj().transpose(1, 2)   # Ĥ Ĥᴴ, (F, C, C)

    def __call__(self, b: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
        op = self.op
        hb = op.synthesize_spectrum(b)                              # Ĥ b, (B, C, *freq)
        if op.in_channels == 1:
            inner = hb / (rho.reshape(-1, 1, *([1] * self.energy.ndim)) + self.energy)
        else:
            batch, channels = hb.shape[:2]
            eye = torch.eye(channels, dtype=hb.dtype, device=hb.device)
            system = self.small_gram.unsqueeze(0) + rho.reshape(-1, 1, 1, 1).to(hb.dtype) * eye   # (B, F, C, C)
            rhs = hb.flatten(2).transpose(1, 2).unsqueeze(-1)                                      # (B, F, C, 1)
            inner = torch.linalg.solve(system, rhs).squeeze(-1).transpose(1, 2).reshape(hb.shape)
        return (b - op.analyze_spectrum(inner)) / rho.reshape(-1, *([1] * (b.ndim - 1)))


def _admm_phase(op, x, y, u, rho, lam_t, mu, nonneg, max_iter, tol, check_every, inplace: bool):
    """ADMM iterations from the state (y, u, ρ); returns the new state, the iterations run and convergence.

    ``inplace`` (no autograd): every large array is written into reused buffers (fresh large tensors cost
    page faults); otherwise the same operations allocate, and the loop is differentiable. The x-update is
    computed as (b/ρ − Ĥᴴ(Ĥ b/ρ)/(ρ + ‖ĥ‖²)) so that no division by ρ touches the large arrays.
    """
    batch = x.shape[0]
    view = (batch,) + (1,) * (y.ndim - 1)
    solve_shifted = _ShiftedInverse(op)
    analysis_spectrum = op.analyze_spectrum(op.rfft(x))            # D̂ᵀx, computed once
    buffers = {}
    if inplace:
        y, u = y.clone(), u.clone()                                 # never write into the caller's tensors
        buffers = {"y_next": torch.empty_like(y), "z": torch.empty_like(y), "v": torch.empty_like(y),
                   "spectrum": torch.empty_like(analysis_spectrum)}
    scaled_analysis = None
    converged = torch.zeros(batch, dtype=torch.bool, device=x.device)
    tiny = torch.finfo(x.dtype).tiny
    k = 0
    for k in range(1, max_iter + 1):
        if scaled_analysis is None:                                 # D̂ᵀx/ρ, refreshed when ρ changes
            rho_v = rho.reshape(view)
            scaled_analysis = analysis_spectrum / rho_v
            threshold = lam_t / rho_v
            threshold = float(threshold) if threshold.numel() == 1 else threshold
            shrink = mu / rho_v if mu else 0.0
        v = torch.sub(y, u, out=buffers.get("v"))
        spectrum = torch.fft.rfftn(v, dim=op.dims, out=buffers.get("spectrum"))
        spectrum = torch.add(spectrum, scaled_analysis, out=buffers.get("spectrum"))  # b/ρ
        if op.in_channels == 1:
            inner = op.synthesize_spectrum(spectrum) / (rho.reshape(-1, 1, *([1] * solve_shifted.energy.ndim))
                                                      + solve_shifted.energy)
            spectrum = torch.addcmul(spectrum, op.spectra[:, 0].conj(), inner, value=-1,
                                     out=buffers.get("spectrum"))
        else:
            spectrum = solve_shifted(spectrum * rho_v, rho)
        z = torch.fft.irfftn(spectrum, s=op.signal_size, dim=op.dims, out=buffers.get("z"))
        check = k % BALANCE_PERIOD == 0 or k % check_every == 0 or k == max_iter
        if check:
            with torch.no_grad():
                z_norm = _norm(z)
        relaxed = torch.mul(z, RELAXATION, out=buffers.get("z"))
        relaxed = torch.add(relaxed, y, alpha=1 - RELAXATION, out=buffers.get("z"))
        v = torch.add(relaxed, u, out=buffers.get("v"))
        y_next = elastic_net_prox(v, threshold, shrink, nonneg, out=buffers.get("y_next"), check=False)
        u = torch.sub(torch.add(u, relaxed, out=u if inplace else None), y_next, out=u if inplace else None)
        y, y_prev = y_next, y
        if inplace:
            buffers["y_next"] = y_prev                              # the previous y's memory is next y's
        if not check:
            continue
        with torch.no_grad():
            y_norm = _norm(y)
            # z − y from the relaxed point r = αz + (1 − α)y_prev:  z − y = ((r − y) + (α − 1)(y_prev − y))/α
            split = (relaxed - y).add_(y_prev - y, alpha=RELAXATION - 1).div_(RELAXATION)
            primal = _norm(split) / torch.maximum(z_norm, y_norm).clamp_min(tiny)
            change = _norm(y - y_prev)
            # converged: the code stopped moving and the split is closed, both relative to tol
            converged = (change <= tol * y_norm) & (primal <= tol)
            if bool(converged.all()):
                break
            if k % BALANCE_PERIOD != 0:
                continue
            ratio = primal / (change / _norm(u).clamp_min(tiny)).clamp_min(tiny)
            factor = torch.sqrt(torch.where(ratio > 1, ratio, 1 / ratio.clamp_min(1e-30))).clamp(max=MAX_RHO_FACTOR)
            factor = torch.where(ratio > BALANCE_RATIO, factor,
                                 torch.where(ratio < 1 / BALANCE_RATIO, 1 / factor, torch.ones_like(factor)))
        if bool((factor != 1).any()):  # the scaled dual u = (dual variable)/ρ changes with ρ
            rho = rho * factor
            u = torch.div(u, factor.reshape(view), out=u if inplace else None)
            scaled_analysis = None
    return (y, u, rho), k, bool(converged.all())


def fourier_admm(dictionary, x: torch.Tensor, lam_t: torch.Tensor, mu: float, nonneg: bool, z0: torch.Tensor,
                 max_iter: int, tol: float, iterate_dtype: torch.dtype | None = None, check_every: int = 5):
    r"""ADMM with per-frequency Woodbury solves for a circular ``ConvDictionary`` (module docstring).

    .. math:: \hat z = \argmin_z \tfrac12\Big\|x - \sum_m h_m \circledast z_m\Big\|_2^2
              + \sum_i \lambda_i |z_i| + \tfrac{\mu}{2}\|z\|_2^2 \quad(z \ge 0 \text{ if } \texttt{nonneg}).

    Returns ``(y, n_iter, converged)``: ``y`` is the prox output (exactly sparse); ``converged``
    when :math:`\|y^{k} - y^{k-1}\| \le \texttt{tol}\,\|y^k\|` and the relative split residual
    :math:`\|z - y\|/\max(\|z\|, \|y\|) \le \texttt{tol}`. With ``iterate_dtype`` the iterations
    run in that dtype to ``max(tol, 10·eps)``, then continue in ``x``'s dtype from its ``y``.
    """
    signal_size = tuple(x.shape[2:])
    inplace = not (torch.is_grad_enabled() and any(t.requires_grad for t in (x, z0, lam_t, dictionary.weight)))
    # ρ₀ = 50 λ + 1: the initial penalty suggested by Wohlberg (2016) for this problem
    rho = (50 * lam_t.mean() + 1).reshape(1).expand(x.shape[0]).to(x.dtype).clone()
    state, total = (z0, torch.zeros_like(z0), rho), 0
    if iterate_dtype is not None and iterate_dtype != x.dtype:
        op_low = FourierConvOperator(dictionary, signal_size, dtype=iterate_dtype)
        phase_tol = max(tol, 10 * torch.finfo(iterate_dtype).eps)
        state, total, _ = _admm_phase(op_low, x.to(iterate_dtype), *(t.to(iterate_dtype) for t in state),
                                      lam_t.to(iterate_dtype), mu, nonneg, max_iter, phase_tol, check_every, inplace)
        # the whole state (code, scaled dual, penalty) carries over: ADMM's fixed point needs all three
        state = tuple(t.to(x.dtype) for t in state)
    op = FourierConvOperator(dictionary, signal_size)
    state, k, converged = _admm_phase(op, x, *state, lam_t, mu, nonneg, max(max_iter - total, 1), tol,
                                      1 if total else check_every, inplace)
    return state[0], total + k, converged
