r"""Coherence bounds of sparse coding: uniqueness, stability (one layer and deep), generalized
coherence and the LISTA-CP rate constant, and brute-force checks for small dictionaries.

Chapter 9 derives and checks the uniqueness and stability bounds; chapter 10 uses the generalized
coherence :math:`\tilde\mu` and the linear-rate constant of LISTA-CP. Every bound assumes a
dictionary with unit-norm columns (the coherence is then the largest off-diagonal Gram entry).
The brute-force functions enumerate supports and are meant for dictionaries with a few dozen atoms
at most; they guard their size.
"""
from __future__ import annotations

import math
import numbers
import operator

import torch

from ..core.dictionary import mutual_coherence
from ..core.validation import check_choice

# the exhaustive checks live in their own module (size); re-exported so chapters import from one place
from .bruteforce import (
    BruteForceSolutions,
    WorstStableCode,
    restricted_min_eigenvalue_bruteforce,
    spark_bruteforce,
    sparsest_solutions_bruteforce,
    worst_stable_code_bruteforce,
)

__all__ = [
    "mutual_coherence", "generalized_coherence", "generalized_coherence_weights", "lista_cp_rate_constant",
    "welch_bound", "incoherent_dictionary", "spark_lower_bound", "uniqueness_bound", "stability_bound",
    "deep_uniqueness_holds", "deep_stability_bounds",
    "BruteForceSolutions", "WorstStableCode", "restricted_min_eigenvalue_bruteforce", "spark_bruteforce",
    "sparsest_solutions_bruteforce", "worst_stable_code_bruteforce",
]


# ---------------------------------------------------------------------------------------------
# argument checks (bad input names the argument)
# ---------------------------------------------------------------------------------------------
def _check_real(value, name: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"{name} must be a number, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _check_coherence(mu, name: str = "mu") -> float:
    mu = _check_real(mu, name)
    if not 0.0 <= mu <= 1.0:
        raise ValueError(f"{name} is a coherence and must lie in [0, 1], got {mu}")
    return mu


def _check_sparsity(s, name: str = "s") -> int:
    if isinstance(s, bool):
        raise TypeError(f"{name} must be a positive integer, got bool")
    try:
        s = operator.index(s)
    except TypeError:
        raise TypeError(f"{name} must be a positive integer, got {type(s).__name__}") from None
    if s < 1:
        raise ValueError(f"{name} must be a positive integer, got {s}")
    return s


def _check_noise(eps, name: str = "eps") -> float:
    eps = _check_real(eps, name)
    if eps < 0:
        raise ValueError(f"{name} is a noise level and must be non-negative, got {eps}")
    return eps


def _check_matrix(weight, name: str) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n_features, n_atoms), got {type(weight).__name__}")
    if weight.ndim != 2 or weight.shape[0] < 1 or weight.shape[1] < 2:
        raise ValueError(f"{name} must have shape (n_features, n_atoms) with at least two atoms, "
                         f"got {tuple(weight.shape)}")
    if not weight.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {weight.dtype}")
    if not torch.isfinite(weight).all():
        raise ValueError(f"{name} contains NaN or Inf")
    if (weight.norm(dim=0) == 0).any():
        raise ValueError(f"{name} has an all-zero atom (column)")
    return weight


# ---------------------------------------------------------------------------------------------
# generalized coherence and the LISTA-CP rate (chapter 10)
# ---------------------------------------------------------------------------------------------
def generalized_coherence(W: torch.Tensor, D: torch.Tensor, *, rescale: bool = False, tol: float = 1e-8) -> float:
    r"""Generalized mutual coherence of an encoder ``W`` against a dictionary ``D``.

    .. math:: \tilde\mu(W, D) = \max_{i \ne j} |w_i^\top d_j| \quad\text{with}\quad w_i^\top d_i = 1,

    the quantity that sets the linear rate of LISTA-CP in chapter 10 (the coupled weights of Chen et al. 2018).
    ``W`` and ``D`` have shape ``(n_features, n_atoms)``; column :math:`i` of ``W`` is :math:`w_i`.
    With ``W = D`` and unit-norm atoms it equals :func:`mutual_coherence`. The constraint
    :math:`w_i^\top d_i = 1` is checked to tolerance ``tol``; ``rescale=True`` divides each
    :math:`w_i` by :math:`w_i^\top d_i` first. Implements chapter 10, equation ``eq-generalized-coherence``.
    """
    W = _check_matrix(W, "W")
    D = _check_matrix(D, "D")
    if W.shape != D.shape:
        raise ValueError(f"W must have the shape of D {tuple(D.shape)}, got {tuple(W.shape)}")
    cross = (W.T @ D).detach()  # entry (i, j) = w_i^T d_j
    diagonal = cross.diagonal()
    if rescale:
        if (diagonal.abs() <= tol).any():
            raise ValueError("W has a column with w_i^T d_i = 0; it cannot be rescaled to w_i^T d_i = 1")
        cross = cross / diagonal[:, None]
    elif not torch.allclose(diagonal, torch.ones_like(diagonal), rtol=0.0, atol=tol):
        worst = float((diagonal - 1).abs().max())
        raise ValueError(f"W must satisfy w_i^T d_i = 1 for every atom (max deviation {worst:.3g}); "
                         "pass rescale=True to normalize it")
    off_diagonal = cross.abs()
    off_diagonal.fill_diagonal_(0)
    return float(off_diagonal.max())


def _analytic_weights(D: torch.Tensor) -> torch.Tensor:
    # min ||D^T w_i||^2 s.t. d_i^T w_i = 1 has the Lagrange solution w_i ∝ (D D^T)^+ d_i; the
    # pseudo-inverse keeps it valid when D is rank deficient (components outside range(D) change nothing)
    frame_inverse = torch.linalg.pinv(D @ D.T, hermitian=True)
    directions = frame_inverse @ D
    return directions / (D * directions).sum(dim=0, keepdim=True)


def _minimax_weights(D: torch.Tensor) -> torch.Tensor:
    # One linear program per atom: min t s.t. |d_j^T w| <= t (j != i), d_i^T w = 1. Its optimum is
    # the exact minimal row max; by LP duality it equals 1 / min{||y||_1 : D_{-i} y = d_i}.
    try:
        import numpy as np
        from scipy.optimize import linprog
    except ImportError as error:  # scipy is not a core dependency
        raise ImportError("method='minimax' needs scipy (pip install scipy)") from error
    dictionary = D.detach().to(torch.float64).cpu().numpy()
    n_features, n_atoms = dictionary.shape
    weights = np.zeros_like(dictionary)
    cost = np.zeros(n_features + 1)
    cost[-1] = 1.0
    for i in range(n_atoms):
        others = np.delete(dictionary, i, axis=1).T  # (n_atoms - 1, n_features)
        minus_t = -np.ones((others.shape[0], 1))
        inequalities = np.vstack([np.hstack([others, minus_t]), np.hstack([-others, minus_t])])
        equality = np.append(dictionary[:, i], 0.0)[None, :]
        result = linprog(cost, A_ub=inequalities, b_ub=np.zeros(2 * others.shape[0]), A_eq=equality,
                         b_eq=[1.0], bounds=[(None, None)] * n_features + [(0, None)], method="highs")
        if result.status != 0:
            raise RuntimeError(f"the linear program for atom {i} failed: {result.message}")
        weights[:, i] = result.x[:n_features]
    weights = torch.as_tensor(weights, dtype=D.dtype, device=D.device)
    # the solver meets w_i^T d_i = 1 to its feasibility tolerance only; rescale so it holds to round-off
    return weights / (weights * D).sum(dim=0, keepdim=True)


def generalized_coherence_weights(D: torch.Tensor, *, method: str = "analytic") -> torch.Tensor:
    r"""An encoder ``W`` (same shape as ``D``) with :math:`w_i^\top d_i = 1` and small :math:`\tilde\mu(W, D)`.

    ``method="analytic"`` solves the Frobenius relaxation of ALISTA (Liu et al. 2019) in closed form,

    .. math:: \min_W \|W^\top D\|_F^2 \ \text{s.t.}\ w_i^\top d_i = 1
              \;\Rightarrow\; w_i = \frac{(DD^\top)^{+} d_i}{d_i^\top (DD^\top)^{+} d_i};

    ``method="minimax"`` solves the exact problem of LISTA-CP (Chen et al. 2018), one linear program
    per atom (needs scipy),

    .. math:: \tilde\mu^\star(D) = \min_{W:\, w_i^\top d_i = 1} \max_{i \ne j} |w_i^\top d_j|.

    Implements chapter 10, equation ``eq-generalized-coherence``.
    """
    D = _check_matrix(D, "D")
    method = check_choice(method, "method", ("analytic", "minimax"))
    return _analytic_weights(D) if method == "analytic" else _minimax_weights(D)


def lista_cp_rate_constant(mu_tilde, s) -> float:
    r"""Linear-rate constant :math:`c = -\log\big((2s - 1)\tilde\mu\big)` of LISTA-CP.

    Chapter 10's theorem ``thm-ch10-linear-rate`` (our derivation, after the coupled weights of Chen et al. 2018):
    for codes with at most :math:`s` non-zeros bounded by :math:`B` and :math:`(2s - 1)\tilde\mu < 1`, LISTA-CP with the
    thresholds of ``eq-ch10-theorem-thresholds`` has :math:`\|z^k - z^\ast\|_2 \le s B e^{-ck}`. Returns ``inf`` when
    :math:`\tilde\mu = 0`; raises ``ValueError`` ("invalid sparsity level") when
    :math:`(2s - 1)\tilde\mu \ge 1`. Implements chapter 10, equation ``eq-lista-cp-rate``.
    """
    mu_tilde = _check_coherence(mu_tilde, "mu_tilde")
    s = _check_sparsity(s, "s")
    product = (2 * s - 1) * mu_tilde
    if product >= 1.0:
        raise ValueError(f"invalid sparsity level s={s} for mu_tilde={mu_tilde:.4g}: "
                         f"(2s - 1) * mu_tilde = {product:.4g} >= 1, so no linear rate is guaranteed")
    if product == 0.0:
        return math.inf
    return -math.log(product)


# ---------------------------------------------------------------------------------------------
# uniqueness and stability bounds (chapter 9)
# ---------------------------------------------------------------------------------------------
def spark_lower_bound(mu) -> float:
    r"""Coherence lower bound on the spark: :math:`\operatorname{spark}(D) \ge 1 + 1/\mu(D)`.

    Holds for unit-norm atoms (Gershgorin on every Gram submatrix; Donoho & Elad 2003). Returns
    ``inf`` for :math:`\mu = 0`. Implements chapter 9, equation ``eq-spark-coherence``.
    """
    mu = _check_coherence(mu)
    return math.inf if mu == 0 else 1.0 + 1.0 / mu


def uniqueness_bound(mu) -> float:
    r"""Sparsity below which a representation is the unique sparsest one: :math:`\tfrac12(1 + 1/\mu)`.

    If :math:`x = D\Gamma` with :math:`\|\Gamma\|_0 < \tfrac12(1 + 1/\mu(D))`, then :math:`\Gamma` is the
    unique solution of :math:`\min_z \|z\|_0` s.t. :math:`Dz = x` (Donoho & Elad 2003). For a convolutional
    dictionary the same threshold on the stripe norm :math:`\|\Gamma\|_{0,\infty}^{s}` makes :math:`\Gamma` the
    unique code of smallest stripe norm (chapter 9, ``thm-ch9-stripe``). Returns ``inf`` for :math:`\mu = 0`.
    Implements chapter 9, equation ``eq-uniqueness-bound``.
    """
    return 0.5 * spark_lower_bound(mu)


def stability_bound(eps, mu, s) -> float:
    r"""Stability of the noisy sparsest code: the bound :math:`4\varepsilon^2 / (1 - \mu(2s - 1))`.

    If :math:`\|\Gamma\|_0 \le s`, :math:`\|\hat\Gamma\|_0 \le s`, :math:`\|x - D\Gamma\|_2 \le \varepsilon` and
    :math:`\|x - D\hat\Gamma\|_2 \le \varepsilon` with unit-norm atoms and :math:`\mu(2s - 1) < 1`, then

    .. math:: \|\hat\Gamma - \Gamma\|_2^2 \le \frac{4\varepsilon^2}{1 - \mu(2s - 1)}

    (the classical coherence bound, e.g. Elad 2010; derived in chapter 9). It holds verbatim with
    :math:`s` the stripe norm :math:`\|\cdot\|_{0,\infty}^{s}` of a convolutional dictionary's codes
    (chapter 9, ``eq-ch9-stripe-stability``). Raises ``ValueError`` ("invalid sparsity level") when
    :math:`\mu(2s - 1) \ge 1`. Implements chapter 9, equation ``eq-stability-bound``.
    """
    eps = _check_noise(eps)
    mu = _check_coherence(mu)
    s = _check_sparsity(s)
    denominator = 1.0 - mu * (2 * s - 1)
    if denominator <= 0:
        raise ValueError(f"invalid sparsity level s={s} for mu={mu:.4g}: mu * (2s - 1) = "
                         f"{mu * (2 * s - 1):.4g} >= 1, so the stability bound does not apply")
    return 4.0 * eps ** 2 / denominator


def _check_layers(mus, sparsities):
    if isinstance(mus, (str, bytes)) or not hasattr(mus, "__len__"):
        raise TypeError("mus must be a sequence with one coherence per layer")
    if isinstance(sparsities, (str, bytes)) or not hasattr(sparsities, "__len__"):
        raise TypeError("sparsities must be a sequence with one sparsity level per layer")
    if len(mus) == 0 or len(mus) != len(sparsities):
        raise ValueError(f"mus and sparsities must be non-empty and of equal length, "
                         f"got {len(mus)} and {len(sparsities)}")
    return ([_check_coherence(m, f"mus[{i}]") for i, m in enumerate(mus)],
            [_check_sparsity(s, f"sparsities[{i}]") for i, s in enumerate(sparsities)])


def deep_uniqueness_holds(mus, sparsities) -> bool:
    r"""Whether every layer of a deep (multi-layer) sparse representation is below its uniqueness bound.

    For :math:`x = D_1\Gamma_1`, :math:`\Gamma_{i-1} = D_i\Gamma_i`, the set :math:`\{\Gamma_i\}` is the unique
    solution of the deep coding problem with :math:`\|\hat\Gamma_i\|_0 \le s_i` when
    :math:`s_i < \tfrac12(1 + 1/\mu(D_i))` for every layer :math:`i`. Papyan et al. (2017) and Li et al.
    (2024) state uniqueness of deep sparse representations in their abstracts; this condition and its
    proof are our derivation (chapter 9, ``thm-ch9-deep``). Implements chapter 9, equation
    ``eq-deep-uniqueness``.
    """
    mus, sparsities = _check_layers(mus, sparsities)
    return all(s < uniqueness_bound(m) for m, s in zip(mus, sparsities, strict=True))


def deep_stability_bounds(eps, mus, sparsities, *, mode: str = "layered") -> list:
    r"""Squared error bounds :math:`\varepsilon_i^2 \ge \|\hat\Gamma_i - \Gamma_i\|_2^2` layer by layer.

    ``mode="layered"``: each layer is a noisy sparse-coding problem whose input is the previous estimate,
    :math:`\|\hat\Gamma_{i-1} - D_i\hat\Gamma_i\|_2 \le \varepsilon_{i-1}`; then

    .. math:: \varepsilon_0 = \varepsilon, \qquad \varepsilon_i^2 = \frac{4\varepsilon_{i-1}^2}{1 - \mu(D_i)(2s_i - 1)}

    (our derivation, chapter 9, ``thm-ch9-deep``). ``mode="consistent"``: only the first layer is noisy and
    the estimates are exactly consistent, :math:`\hat\Gamma_{i-1} = D_i\hat\Gamma_i`; then the factor 4
    appears at the first layer only, :math:`\varepsilon_i^2 = \varepsilon_{i-1}^2/(1 - \mu(D_i)(2s_i - 1))` for
    :math:`i \ge 2`. Implements chapter 9, equations ``eq-deep-stability`` and ``eq-deep-stability-consistent``.
    """
    eps = _check_noise(eps)
    mus, sparsities = _check_layers(mus, sparsities)
    if mode not in ("layered", "consistent"):
        raise ValueError(f"mode must be 'layered' or 'consistent', got {mode!r}")
    bounds, previous = [], eps
    for layer, (mu, s) in enumerate(zip(mus, sparsities, strict=True)):
        try:
            squared = stability_bound(previous, mu, s)
        except ValueError as error:
            raise ValueError(f"layer {layer}: {error}") from None
        if mode == "consistent" and layer > 0:
            squared /= 4.0  # both estimates satisfy Gamma_{i-1} = D_i Gamma_i: ||D_i delta|| <= eps_{i-1}, not 2 eps
        bounds.append(squared)
        previous = math.sqrt(squared)
    return bounds



def welch_bound(n_features: int, n_atoms: int) -> float:
    r"""Welch's lower bound on the coherence of :math:`m` unit vectors in :math:`\mathbb R^n`,
    :math:`\mu \ge \sqrt{(m - n)/(n(m - 1))}` (Welch 1974). Implements chapter 9, equation ``eq-welch``."""
    n, m = (_check_sparsity(n_features, "n_features"), _check_sparsity(n_atoms, "n_atoms"))
    return math.sqrt(max(m - n, 0) / (n * (m - 1))) if m > 1 else 0.0


def incoherent_dictionary(n_features: int, n_atoms: int, target, *, n_iter: int = 300,
                          generator: torch.Generator | None = None, dtype=torch.float64) -> torch.Tensor:
    r"""A unit-norm dictionary ``(n_features, n_atoms)`` with coherence pushed down towards ``target``.

    Alternating projection (Tropp et al. 2005): clip the off-diagonal Gram entries to
    :math:`[-t, t]`, project the result onto the positive semidefinite matrices of rank
    :math:`\le n`, factor it as :math:`D^\top D` and renormalize the atoms,

    .. math:: G \leftarrow I + \operatorname{clip}(D^\top D - I, -t, t), \qquad
              D \leftarrow \operatorname{normalize}\big(\Lambda_n^{1/2} V_n^\top\big).

    A heuristic: the result's coherence is measured, not guaranteed (it cannot beat
    :func:`welch_bound`). Implements chapter 9, equation ``eq-incoherent-frame``.
    """
    n, m = _check_sparsity(n_features, "n_features"), _check_sparsity(n_atoms, "n_atoms")
    target = _check_coherence(target, "target")
    n_iter = _check_sparsity(n_iter, "n_iter")
    weight = torch.randn(n, m, generator=generator, dtype=torch.float64)
    weight = weight / weight.norm(dim=0)
    eye = torch.eye(m, dtype=torch.float64)
    for _ in range(n_iter):
        gram = eye + (weight.T @ weight - eye).clamp(-target, target)
        eigenvalues, eigenvectors = torch.linalg.eigh(gram)  # ascending: the last n span the best rank-n fit
        weight = (eigenvectors[:, -n:] * eigenvalues[-n:].clamp_min(0).sqrt()).T
        weight = weight / weight.norm(dim=0).clamp_min(torch.finfo(weight.dtype).tiny)
    return weight.to(dtype)
