r"""``solve``: ISTA and FISTA for (non-negative, elastic-net) sparse coding with any ``Dictionary``.

Every solver minimizes, per sample,

.. math:: F(z) = \tfrac12\|x - Dz\|_2^2 + \sum_i \lambda_i |z_i| + \tfrac{\mu}{2}\|z\|_2^2
          \quad(\text{subject to } z \ge 0 \text{ if } \texttt{nonneg}),

with the proximal-gradient step :math:`z \leftarrow \operatorname{prox}_{g/L}\big(y - \tfrac1L D^\top(Dy - x)\big)`
(chapter 5, ``eq-ista`` and ``eq-fista``), run by the package's one loop
(:func:`cscnb.solvers.engine.proximal_gradient`: no momentum for ISTA, FISTA's for FISTA, FISTA with
adaptive restart for ``"fista_restart"``). Every method returns a :class:`SolveResult`; ``"ista"`` and
``"fista"`` can record a history ready to plot. ``"admm_fourier"`` (circular, stride-1, "same"-size
convolutional dictionaries) minimizes the same objective by ADMM in the Fourier domain
(:mod:`cscnb.solvers.admm`) instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Real

import torch

from ..core.dictionary import Dictionary, LinearDictionary
from ..core.prox import elastic_net_prox
from ..core.validation import check_bool, check_choice, nonneg_number, positive_int, positive_number
from .admm import fourier_admm
from .engine import fista_step, fista_steps, forward_backward, proximal_gradient
from .fourier import DOMAINS, fourier_fista, use_fourier
from .restart import restarted_fista

__all__ = ["solve", "objective", "kkt_residual", "fista_step", "fista_steps", "SolveResult", "SolveHistory", "METHODS",
           "DOMAINS"]

METHODS = ("ista", "fista", "fista_restart", "admm_fourier")
DEFAULT_MAX_ITER = 1000


@dataclass
class SolveHistory:
    """Per-iteration record (row k is after k iterations; row 0 is the starting point)."""
    objective: torch.Tensor          # (k+1, B) per-sample objective F(z_k)
    relative_change: torch.Tensor    # (k,) max over samples of ‖z_k − z_{k−1}‖ / max(‖z_{k−1}‖, tiny)
    step: torch.Tensor               # (k,) step size 1/L used at iteration k


@dataclass
class SolveResult:
    """What :func:`solve` returns."""
    z: torch.Tensor                  # the code, shaped like dictionary.analyze(x)
    n_iter: int                      # iterations run
    converged: bool                  # relative change fell below tol
    objective: torch.Tensor          # (B,) per-sample objective at z
    history: SolveHistory | None = field(default=None, repr=False)


# ---------------------------------------------------------------------------------------------
# argument checks: every bad input raises naming the argument and what was expected

def _check_inputs(dictionary, x, lam, mu, z0=None):
    if not isinstance(dictionary, Dictionary):
        raise TypeError("dictionary must be a cscnb LinearDictionary or ConvDictionary, "
                        f"got {type(dictionary).__name__}")
    dictionary.check_signal(x, "x")
    if x.shape[0] == 0:
        raise ValueError("x must contain at least one sample, got an empty batch")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.dtype != dictionary.weight.dtype:
        raise TypeError(f"x has dtype {x.dtype} but the dictionary weight has dtype {dictionary.weight.dtype}; "
                        "convert one of them")
    if x.device != dictionary.weight.device:
        raise ValueError(f"x is on {x.device} but the dictionary weight is on {dictionary.weight.device}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or Inf values")
    if not torch.isfinite(dictionary.weight).all():
        raise ValueError("dictionary weight contains NaN or Inf values")
    code_shape = dictionary.code_shape(x.shape)
    lam_t = _broadcast_lam(lam, dictionary, len(code_shape), x)
    if isinstance(mu, torch.Tensor):
        if mu.numel() != 1:
            raise ValueError(f"mu must be a non-negative scalar, got a tensor of shape {tuple(mu.shape)}")
        mu = float(mu)
    mu = nonneg_number(mu, "mu")
    if z0 is not None:
        if not isinstance(z0, torch.Tensor):
            raise TypeError(f"z0 must be a torch.Tensor or None, got {type(z0).__name__}")
        if tuple(z0.shape) != tuple(code_shape):
            raise ValueError(f"z0 must have the code shape {tuple(code_shape)}, got {tuple(z0.shape)}")
        if not torch.isfinite(z0).all():
            raise ValueError("z0 contains NaN or Inf values")
    return lam_t, mu, code_shape


def _broadcast_lam(lam, dictionary, code_ndim, x):
    """λ as a tensor broadcastable to the code: scalar, per-atom (n_atoms,), or full code shape."""
    if isinstance(lam, bool) or not isinstance(lam, (Real, torch.Tensor)):
        raise TypeError(f"lam must be a non-negative number or a tensor of per-atom values, got {type(lam).__name__}")
    lam_t = torch.as_tensor(lam, dtype=x.dtype, device=x.device)
    if not torch.isfinite(lam_t).all():
        raise ValueError("lam contains NaN or Inf values")
    if (lam_t < 0).any():
        raise ValueError(f"lam must be non-negative, got minimum {lam_t.min().item():.3g}")
    if lam_t.ndim == 0:
        return lam_t
    if lam_t.ndim == 1:
        if lam_t.shape[0] != dictionary.n_atoms:
            raise ValueError(f"per-atom lam must have length n_atoms={dictionary.n_atoms}, got length {lam_t.shape[0]}")
        return lam_t.reshape(dictionary.n_atoms, *([1] * (code_ndim - 2)))
    if lam_t.ndim == code_ndim:
        return lam_t  # fully specified (e.g. per sample and atom); broadcasting errors surface below
    raise ValueError(f"lam must be a scalar, a per-atom tensor of shape ({dictionary.n_atoms},), or a tensor "
                     f"with {code_ndim} dimensions broadcastable to the code; got shape {tuple(lam_t.shape)}")


def _check_iteration_args(method, n_iter, tol):
    check_choice(method, "method", METHODS)
    if n_iter is not None:
        positive_int(n_iter, "n_iter")
    positive_number(tol, "tol")


def _check_fast_options(method, dictionary, history, polish, iterate_dtype, fourier=False):
    check_bool(polish, "polish")
    if iterate_dtype is not None and not (isinstance(iterate_dtype, torch.dtype) and iterate_dtype.is_floating_point):
        raise TypeError(f"iterate_dtype must be a floating-point torch.dtype or None, got {iterate_dtype!r}")
    if method == "admm_fourier":
        if polish:
            raise ValueError(f"polish=True needs method='fista_restart', got method={method!r}")
        if history:
            raise ValueError("history=True is recorded for method='ista' or 'fista' only")
        return
    if method != "fista_restart":
        # the textbook methods stay textbook: their speed-ups live behind method="fista_restart"
        if polish:
            raise ValueError(f"polish=True needs method='fista_restart', got method={method!r}")
        if iterate_dtype is not None:
            raise ValueError(f"iterate_dtype needs method='fista_restart' and polish=True, got method={method!r}")
        return
    if history:
        raise ValueError("history=True is recorded for method='ista' or 'fista' only (the batch of "
                         "'fista_restart' shrinks as samples converge)")
    if polish and not isinstance(dictionary, LinearDictionary):
        raise ValueError("polish=True needs a LinearDictionary (it solves small systems with columns of D)")
    if iterate_dtype is not None and not polish and not fourier:
        raise ValueError("iterate_dtype needs polish=True (only polished codes are exact in x's dtype)")


# ---------------------------------------------------------------------------------------------

def _per_sample_sum(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).sum(dim=1)


def _objective(dictionary, x, z, lam_t, mu, signal_size):
    residual = x - dictionary.synthesize(z, output_size=signal_size)
    value = 0.5 * _per_sample_sum(residual.square()) + _per_sample_sum(lam_t * z.abs())
    if mu:
        value = value + 0.5 * mu * _per_sample_sum(z.square())
    return value


def objective(dictionary, x, z, lam, mu=0.0) -> torch.Tensor:
    r"""Per-sample objective :math:`\tfrac12\|x - Dz\|^2 + \sum_i\lambda_i|z_i| + \tfrac{\mu}{2}\|z\|^2`,
    shape ``(B,)``.

    Implements chapter 1, equation ``eq-map-objective`` (with the elastic-net term of chapter 12).
    """
    lam_t, mu, code_shape = _check_inputs(dictionary, x, lam, mu)
    if tuple(z.shape) != tuple(code_shape):
        raise ValueError(f"z must have the code shape {tuple(code_shape)}, got {tuple(z.shape)}")
    return _objective(dictionary, x, z, lam_t, mu, dictionary.signal_size(x))


def kkt_residual(dictionary, x, z, lam, mu=0.0, nonneg=False) -> torch.Tensor:
    r"""Largest violation of the optimality conditions of :func:`solve`'s problem, per sample ``(B,)``.

    With :math:`g = D^\top(x - Dz) - \mu z`: for :math:`z_i \ne 0`, :math:`g_i = \lambda_i\operatorname{sign}(z_i)`;
    for :math:`z_i = 0`, :math:`|g_i| \le \lambda_i` (or :math:`g_i \le \lambda_i` if ``nonneg``).
    Implements chapter 2, equation ``eq-kkt``.
    """
    lam_t, mu, code_shape = _check_inputs(dictionary, x, lam, mu)
    if tuple(z.shape) != tuple(code_shape):
        raise ValueError(f"z must have the code shape {tuple(code_shape)}, got {tuple(z.shape)}")
    g = dictionary.analyze(x - dictionary.synthesize(z, output_size=dictionary.signal_size(x))) - mu * z
    lam_full = lam_t.expand_as(z)
    active = z != 0
    on_support = (g - lam_full * torch.sign(z)).abs()
    off_support = torch.relu(g - lam_full) if nonneg else torch.relu(g.abs() - lam_full)
    violation = torch.where(active, on_support, off_support)
    if nonneg:
        violation = torch.maximum(violation, torch.relu(-z))
    return violation.reshape(z.shape[0], -1).amax(dim=1)


def solve(dictionary, x, lam, *, method: str = "fista", nonneg: bool = False, mu=0.0, n_iter: int | None = None,
          tol: float = 1e-6, z0: torch.Tensor | None = None, history: bool = False, polish: bool = False,
          iterate_dtype: torch.dtype | None = None, domain: str = "auto") -> SolveResult:
    r"""Sparse coding by proximal gradient descent.

    .. math:: \hat z = \argmin_{z} \tfrac12\|x - Dz\|_2^2 + \sum_i \lambda_i |z_i| + \tfrac{\mu}{2}\|z\|_2^2
              \quad (\text{s.t. } z \ge 0 \text{ if } \texttt{nonneg}),

    for every sample of the batch ``x`` at once. ``method="ista"`` takes the step of chapter 5
    ``eq-ista``; ``"fista"`` adds the momentum of ``eq-fista`` (Beck and Teboulle, 2009). Both are
    the textbook iterations (step :math:`1/L`, no restart) whose rates chapter 5 checks.

    ``method="fista_restart"`` is the fast variant (:mod:`cscnb.solvers.restart`): FISTA with the
    adaptive gradient restart of O'Donoghue and Candès (2015), each sample stopping on its own
    relative change (converged samples leave the batch). Its iterates differ from ``"fista"``;
    its minimizer does not. For a circular ``ConvDictionary`` with stride 1 and "same" padding it
    can run in the Fourier domain (:mod:`cscnb.solvers.fourier`: :math:`D` and :math:`D^\top` by FFTs,
    the exact Lipschitz constant in closed form, no power iteration), chosen automatically when the
    kernel has at least 25 taps (one input channel) or 49 (several)
    (``cscnb.solvers.fourier.prefer_fourier``, measured in ``benchmarks/bench_solvers.py``).

    ``method="admm_fourier"`` (circular, stride-1, "same"-size ``ConvDictionary`` only) is ADMM with
    per-frequency Sherman–Morrison/Woodbury solves (:mod:`cscnb.solvers.admm`; Wohlberg, 2016): the
    fastest path here for large convolutional problems. It returns the split's sparse variable and
    stops when it moves less than ``tol`` (relative) and the split residual is below ``tol``.

    The iterations are plain autograd operations, so for every method gradients flow to ``x``, ``lam``
    (a number, a scalar tensor or a tensor) and the dictionary weight; the step :math:`1/L` is computed as a
    number and treated as a constant.

    Args:
        dictionary: a ``LinearDictionary`` or a ``ConvDictionary``
        x: signals, ``(B, n_features)`` or ``(B, C, *spatial)`` matching the dictionary
        lam: scalar, per-atom tensor ``(n_atoms,)``, or a tensor with the code's number of dimensions
        method: ``"ista"``, ``"fista"`` (default), ``"fista_restart"`` or ``"admm_fourier"`` (see above;
            :data:`METHODS`)
        nonneg: constrain :math:`z \ge 0` (chapter 2: the prox becomes ReLU with bias :math:`-\lambda/L`)
        mu: elastic-net weight :math:`\mu \ge 0`
        n_iter: iteration cap (default 1000); with ``n_iter`` set and a tolerance reached earlier, stops early
        tol: stop when :math:`\max_b \|z_k - z_{k-1}\| / \|z_{k-1}\| <` ``tol`` (``"fista_restart"``: each
            sample stops on its own relative change, checked every 5 iterations)
        z0: warm start (default zeros)
        history: record the per-iteration objective, relative change and step (``"ista"``/``"fista"``)
        polish: ``"fista_restart"`` with a ``LinearDictionary`` only: solve the optimality system exactly
            on each sample's identified support and keep the result when the full optimality
            conditions hold (chapter 2, ``eq-kkt``). From ``z0 = 0`` a working-set pass runs first (a few
            coordinate-descent sweeps on each sample's most correlated atoms, then exact solves on the
            growing support, each result kept only if it passes the same full check); samples it does not
            finish continue with FISTA from its guess. ``n_iter`` counts FISTA iterations only, so it is
            0 when the pass finished every sample
        iterate_dtype: with ``polish``, the dtype of the support-identifying iterations (e.g.
            ``torch.float32`` for a float64 problem); polished codes are computed and checked in ``x``'s
            dtype, and samples not polished continue in ``x``'s dtype. On the Fourier path (no polish
            needed): iterate in this dtype, then continue in ``x``'s dtype until ``tol``
        domain: for ``"fista_restart"``: ``"auto"`` (the rule above), ``"spatial"`` (convolutions) or
            ``"fourier"`` (FFTs; a ``ValueError`` if the dictionary is not circular, stride 1, "same" size).
            ``"admm_fourier"`` accepts ``"auto"`` or ``"fourier"`` (``"spatial"`` is a ``ValueError``); the
            textbook methods accept ``"auto"`` or ``"spatial"``
    """
    _check_iteration_args(method, n_iter, tol)
    lam_t, mu, code_shape = _check_inputs(dictionary, x, lam, mu, z0)
    signal_size = dictionary.signal_size(x)
    fourier = use_fourier(method, domain, dictionary, signal_size)
    _check_fast_options(method, dictionary, history, polish, iterate_dtype, fourier)
    max_iter = DEFAULT_MAX_ITER if n_iter is None else n_iter
    z = torch.zeros(code_shape, dtype=x.dtype, device=x.device) if z0 is None else z0.to(x.dtype)
    if fourier:
        fourier_solver = fourier_admm if method == "admm_fourier" else fourier_fista
        z, k, converged = fourier_solver(dictionary, x, lam_t, mu, nonneg, z, max_iter, tol,
                                         iterate_dtype=iterate_dtype)
        with torch.no_grad():
            final = _objective(dictionary, x, z, lam_t, mu, signal_size)
        return SolveResult(z=z, n_iter=k, converged=converged, objective=final)
    L = dictionary.lipschitz_constant(signal_size)
    if L == 0:
        raise ValueError("the dictionary is all zeros (Lipschitz constant 0); there is nothing to code with")
    step = 1.0 / L
    threshold = lam_t * step
    shrink = mu * step
    analysis_of_x = dictionary.analyze(x)  # Dᵀx, computed once

    def gradient(y):  # DᵀDy − Dᵀx
        return dictionary.analyze(dictionary.synthesize(y, output_size=signal_size)) - analysis_of_x

    def prox(u, eta, out):  # λ and μ were checked once in _check_inputs; no per-iteration re-validation
        return elastic_net_prox(u, threshold, shrink, nonneg, out=out, check=False)
    prox_grad = forward_backward(gradient, prox, step)

    if method == "fista_restart":
        z, k, converged = restarted_fista(dictionary, x, lam_t, mu, nonneg, step, signal_size, z, max_iter, tol,
                                          polish=polish, iterate_dtype=iterate_dtype)
        with torch.no_grad():
            final = _objective(dictionary, x, z, lam_t, mu, signal_size)
        return SolveResult(z=z, n_iter=k, converged=converged, objective=final)
    return _iterate(prox_grad, z, method == "fista", max_iter, tol, step, history,
                    lambda zz: _objective(dictionary, x, zz, lam_t, mu, signal_size))


def _iterate(prox_grad, z, momentum: bool, max_iter: int, tol: float, step: float, keep_history: bool,
             objective_fn) -> SolveResult:
    """ISTA and FISTA: the engine's loop with a monitor that records the history and stops on ``tol``."""
    objectives, changes, state = [], [], {"converged": False}
    if keep_history:
        with torch.no_grad():
            objectives.append(objective_fn(z).detach())
    tiny = torch.finfo(z.dtype).tiny

    def monitor(k, z_next, z_prev, delta):
        with torch.no_grad():
            diff = (z_next - z_prev).reshape(z_prev.shape[0], -1).norm(dim=1)
            base = z_prev.reshape(z_prev.shape[0], -1).norm(dim=1).clamp_min(tiny)
            # a sample whose code stays exactly 0 has converged
            rel = torch.where(diff == 0, torch.zeros_like(diff), diff / base)
            change = float(rel.max())
            if keep_history:
                changes.append(change)
                objectives.append(objective_fn(z_next).detach())
        if change < tol:
            state["converged"] = True
            return True
        return None

    z, k = proximal_gradient(prox_grad, z, max_iter, momentum="fista" if momentum else "none", monitor=monitor)
    with torch.no_grad():
        final = objectives[-1] if keep_history else objective_fn(z).detach()
    hist = None
    if keep_history:
        hist = SolveHistory(objective=torch.stack(objectives),
                            relative_change=torch.tensor(changes, dtype=torch.float64),
                            step=torch.full((len(changes),), step, dtype=torch.float64))
    return SolveResult(z=z, n_iter=k, converged=state["converged"], objective=final, history=hist)
