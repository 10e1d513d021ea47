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
:math:`(\hat H^{\mathsf H}\hat H + \rho I)^{-1} b = \big(b - \hat H^{\mathsf H}(\rho I + \hat H\hat H^{\mathsf H})^{-1}\hat H b\big)/\rho`,
a scalar division for one channel (Sherman–Morrison). This is the algorithm of Wohlberg (2016,
"Efficient algorithms for convolutional sparse representations"), written here from the formulas
above; :math:`\rho` is adapted by residual balancing (Boyd et al., 2011, §3.4.1; Wohlberg, 2015).
Benchmark path (``benchmarks/bench_solvers.py``) for the convolutional sparse-coding model of
chapter 3 (``eq-ch3-csc``).
"""
from __future__ import annotations

import torch

from .fourier import FourierConvOperator, prox_into

__all__ = ["fourier_admm"]

RELAXATION = 1.8        # α: over-relaxation, 1.5–1.8 is the usual range (Boyd et al., 2011, §3.4.3)
BALANCE_PERIOD = 5      # iterations between ρ updates (5 or 1 need ~20 % fewer iterations than 10 here)
BALANCE_RATIO = 1.2     # rebalance when one normalised residual exceeds the other by this factor
MAX_RHO_FACTOR = 100.0  # largest single change of ρ


def _norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


def _prox(v, threshold, shrink, nonneg):
    out = torch.relu(v - threshold) if nonneg else v - torch.clamp(v, -threshold, threshold)
    return out / (1 + shrink)


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


def _admm_phase(op, x, y, u, rho, lam_t, mu, nonneg, max_iter, tol, check_every):
    """ADMM iterations from the state (y, u, ρ); returns the new state, the iterations run and convergence."""
    batch = x.shape[0]
    view = (batch,) + (1,) * (y.ndim - 1)
    solve_shifted = _ShiftedInverse(op)
    analysis_spectrum = op.analyze_spectrum(op.rfft(x))            # D̂ᵀx, computed once
    converged = torch.zeros(batch, dtype=torch.bool, device=x.device)
    k = 0
    for k in range(1, max_iter + 1):
        rho_v = rho.reshape(view)
        z = op.irfft(solve_shifted(analysis_spectrum + op.rfft(rho_v * (y - u)), rho))
        relaxed = RELAXATION * z + (1 - RELAXATION) * y
        y_next = _prox(relaxed + u, lam_t / rho_v, mu / rho_v, nonneg)
        u = u + relaxed - y_next
        y_prev, y = y, y_next
        balance = k % BALANCE_PERIOD == 0
        if not (balance or k % check_every == 0 or k == max_iter):
            continue
        with torch.no_grad():
            y_norm = _norm(y)
            primal = _norm(z - y) / torch.maximum(_norm(z), y_norm).clamp_min(torch.finfo(x.dtype).tiny)
            change = _norm(y - y_prev)
            dual = change / _norm(u).clamp_min(torch.finfo(x.dtype).tiny)
            # converged: the code stopped moving and the split is closed, both relative to tol
            converged = (change <= tol * y_norm) & (primal <= tol)
            if bool(converged.all()):
                break
            if balance:
                ratio = primal / dual.clamp_min(torch.finfo(x.dtype).tiny)
                factor = torch.sqrt(torch.where(ratio > 1, ratio, 1 / ratio.clamp_min(1e-30)))
                factor = factor.clamp(max=MAX_RHO_FACTOR)
                factor = torch.where(ratio > BALANCE_RATIO, factor,
                                     torch.where(ratio < 1 / BALANCE_RATIO, 1 / factor, torch.ones_like(factor)))
        # the scaled dual u = (dual variable)/ρ changes with ρ
        if balance:
            rho = rho * factor
            u = u / factor.reshape(view)
    return (y, u, rho), k, bool(converged.all())


def _admm_phase_inplace(op, x, y, u, rho, lam_t, mu, nonneg, max_iter, tol, check_every):
    """:func:`_admm_phase` without autograd, in reused buffers (fresh large tensors cost page faults).

    Same iterates up to rounding; the x-update is computed as (b/ρ − Ĥᴴ(Ĥ b/ρ)/(ρ + ‖ĥ‖²)) so that
    no division by ρ touches the large arrays.
    """
    batch = x.shape[0]
    view = (batch,) + (1,) * (y.ndim - 1)
    solve_shifted = _ShiftedInverse(op)
    analysis_spectrum = op.analyze_spectrum(op.rfft(x))            # D̂ᵀx, computed once
    y, u = y.clone(), u.clone()                                     # never write into the caller's tensors
    y_next, z, v = torch.empty_like(y), torch.empty_like(y), torch.empty_like(y)
    spectrum = torch.empty_like(analysis_spectrum)
    scaled_analysis = None
    converged = torch.zeros(batch, dtype=torch.bool, device=x.device)
    k = 0
    for k in range(1, max_iter + 1):
        if scaled_analysis is None:                                 # D̂ᵀx/ρ, refreshed when ρ changes
            scaled_analysis = analysis_spectrum / rho.reshape(view)
            rho_v = rho.reshape(view)
            threshold = lam_t / rho_v
            scalar_threshold = float(threshold) if threshold.numel() == 1 else None
            shrink = mu / rho_v
        torch.sub(y, u, out=v)
        torch.fft.rfftn(v, dim=op.dims, out=spectrum)
        spectrum.add_(scaled_analysis)                              # b/ρ
        if op.in_channels == 1:
            inner = op.synthesize_spectrum(spectrum) / (rho.reshape(-1, 1, *([1] * solve_shifted.energy.ndim))
                                                      + solve_shifted.energy)
            spectrum.addcmul_(op.spectra[:, 0].conj(), inner, value=-1)
        else:
            spectrum = solve_shifted(spectrum * rho.reshape(view), rho)
        torch.fft.irfftn(spectrum, s=op.signal_size, dim=op.dims, out=z)
        check = k % BALANCE_PERIOD == 0 or k % check_every == 0 or k == max_iter
        if check:
            z_norm, primal = _norm(z), None
        relaxed = z.mul_(RELAXATION).add_(y, alpha=1 - RELAXATION)
        torch.add(relaxed, u, out=v)
        prox_into(v, y_next, threshold, scalar_threshold, shrink if mu else None, nonneg)
        u.add_(relaxed).sub_(y_next)
        y, y_next = y_next, y                                       # y_next now holds the previous y
        if not check:
            continue
        tiny = torch.finfo(x.dtype).tiny
        y_norm = _norm(y)
        # z − y from the relaxed point r = αz + (1 − α)y_prev:  z − y = ((r − y) + (α − 1)(y_prev − y))/α
        split = (relaxed - y).add_(y_next - y, alpha=RELAXATION - 1).div_(RELAXATION)
        primal = _norm(split) / torch.maximum(z_norm, y_norm).clamp_min(tiny)
        change = _norm(y - y_next)
        converged = (change <= tol * y_norm) & (primal <= tol)
        if bool(converged.all()):
            break
        if k % BALANCE_PERIOD == 0:
            ratio = primal / (change / _norm(u).clamp_min(tiny)).clamp_min(tiny)
            factor = torch.sqrt(torch.where(ratio > 1, ratio, 1 / ratio.clamp_min(1e-30))).clamp(max=MAX_RHO_FACTOR)
            factor = torch.where(ratio > BALANCE_RATIO, factor,
                                 torch.where(ratio < 1 / BALANCE_RATIO, 1 / factor, torch.ones_like(factor)))
            if bool((factor != 1).any()):
                rho = rho * factor
                u.div_(factor.reshape(view))
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
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, z0, lam_t, dictionary.weight))
    phase = _admm_phase if needs_grad else _admm_phase_inplace
    # ρ₀ = 50 λ + 1: the initial penalty suggested by Wohlberg (2016) for this problem
    rho = (50 * lam_t.mean() + 1).reshape(1).expand(x.shape[0]).to(x.dtype).clone()
    state, total = (z0, torch.zeros_like(z0), rho), 0
    if iterate_dtype is not None and iterate_dtype != x.dtype:
        op_low = FourierConvOperator(dictionary, signal_size, dtype=iterate_dtype)
        phase_tol = max(tol, 10 * torch.finfo(iterate_dtype).eps)
        state, total, _ = phase(op_low, x.to(iterate_dtype), *(t.to(iterate_dtype) for t in state),
                                      lam_t.to(iterate_dtype), mu, nonneg, max_iter, phase_tol, check_every)
        # the whole state (code, scaled dual, penalty) carries over: ADMM's fixed point needs all three
        state = tuple(t.to(x.dtype) for t in state)
    op = FourierConvOperator(dictionary, signal_size)
    state, k, converged = phase(op, x, *state, lam_t, mu, nonneg, max(max_iter - total, 1), tol,
                                      1 if total else check_every)
    return state[0], total + k, converged
