r"""Exhaustive checks of the coherence bounds on small dictionaries (chapter 9).

Each function enumerates supports (sets of atoms) and is exact up to floating-point round-off, so
the chapter can compare a bound with the true worst case. The enumeration is exponential in the
number of atoms; every function refuses problems with more than ``max_subsets`` supports.
Re-exported by :mod:`cscnb.theory`.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from ..core.validation import check_int, nonneg_number, positive_number

__all__ = [
    "spark_bruteforce", "restricted_min_eigenvalue_bruteforce", "sparsest_solutions_bruteforce",
    "BruteForceSolutions", "worst_stable_code_bruteforce", "WorstStableCode",
]

_CHUNK = 4096  # supports per batched linear-algebra call: bounds memory, keeps batches large


def _check_dictionary(D, name: str = "D") -> torch.Tensor:
    if not isinstance(D, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n_features, n_atoms), got {type(D).__name__}")
    if D.ndim != 2 or D.shape[1] < 1 or D.shape[0] < 1:
        raise ValueError(f"{name} must have shape (n_features, n_atoms), got {tuple(D.shape)}")
    if not D.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {D.dtype}")
    if not torch.isfinite(D).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return D.detach()


def _check_size(n_atoms: int, sizes, max_subsets: int, what: str) -> None:
    total = sum(math.comb(n_atoms, k) for k in sizes)
    if total > max_subsets:
        raise ValueError(f"{what} would enumerate {total} supports of {n_atoms} atoms (> max_subsets="
                         f"{max_subsets}); use a smaller dictionary or a smaller support size")


def _supports(n_atoms: int, k: int):
    # yields LongTensors of shape (chunk, k) listing supports in lexicographic order
    combos = itertools.combinations(range(n_atoms), k)
    while True:
        block = list(itertools.islice(combos, _CHUNK))
        if not block:
            return
        yield torch.tensor(block, dtype=torch.long).reshape(len(block), k)


def _columns(D: torch.Tensor, supports: torch.Tensor) -> torch.Tensor:
    return D[:, supports].permute(1, 0, 2)  # (chunk, n_features, k)


def spark_bruteforce(D: torch.Tensor, *, max_subsets: int = 200_000, rtol: float | None = None):
    r"""The spark of ``D``: the smallest number of linearly dependent columns,

    .. math:: \operatorname{spark}(D) = \min\{\|z\|_0 : Dz = 0,\ z \ne 0\},

    by enumerating column subsets of growing size (rank by SVD, tolerance ``rtol`` as in
    ``torch.linalg.matrix_rank``). Any :math:`n + 1` columns in :math:`\mathbb R^n` are dependent, so the
    largest size is not enumerated; returns ``inf`` when all columns are independent. Implements
    chapter 9, equation ``eq-spark``.
    """
    D = _check_dictionary(D)
    n_features, n_atoms = D.shape
    largest = min(n_atoms, n_features)
    _check_size(n_atoms, range(1, largest + 1), max_subsets, "spark_bruteforce")
    for k in range(1, largest + 1):
        for supports in _supports(n_atoms, k):
            ranks = torch.linalg.matrix_rank(_columns(D, supports), rtol=rtol)
            if (ranks < k).any():
                return k
    return n_features + 1 if n_atoms > n_features else math.inf


def restricted_min_eigenvalue_bruteforce(D: torch.Tensor, k: int, *, return_vector: bool = False,
                                         max_subsets: int = 200_000):
    r"""The smallest eigenvalue of any :math:`k`-column Gram matrix,

    .. math:: \lambda_k(D) = \min_{|T| = k} \lambda_{\min}(D_T^\top D_T) = \min_{\|v\|_0 \le k,\, v \ne 0} \|Dv\|^2/\|v\|^2

    (the two agree because removing columns cannot lower :math:`\lambda_{\min}`, by interlacing). For
    unit-norm atoms Gershgorin gives :math:`\lambda_k \ge 1 - \mu(k - 1)`. With ``return_vector`` also
    returns a unit vector :math:`v` (length ``n_atoms``, at most :math:`k` non-zeros) attaining it.
    Implements chapter 9, equation ``eq-restricted-eigenvalue``.
    """
    D = _check_dictionary(D)
    k = check_int(k, "k", minimum=1, maximum=D.shape[1], expected=f"an int in [1, n_atoms={D.shape[1]}]")
    _check_size(D.shape[1], [k], max_subsets, "restricted_min_eigenvalue_bruteforce")
    smallest, vector = math.inf, None
    for supports in _supports(D.shape[1], k):
        columns = _columns(D, supports)
        eigenvalues, eigenvectors = torch.linalg.eigh(columns.mT @ columns)
        row = int(eigenvalues[:, 0].argmin())
        if float(eigenvalues[row, 0]) < smallest:
            smallest = float(eigenvalues[row, 0])
            vector = torch.zeros(D.shape[1], dtype=D.dtype)
            vector[supports[row]] = eigenvectors[row, :, 0]
    smallest = max(smallest, 0.0)  # a singular Gram can come out as -1e-17
    return (smallest, vector) if return_vector else smallest


@dataclass(frozen=True)
class BruteForceSolutions:
    """Exact representations ``x = D z`` found by enumeration: ``codes[r]`` has support ``supports[r]``."""
    sparsity: int | None          # smallest support size with an exact representation (None: none found)
    supports: list
    codes: torch.Tensor           # (n_solutions, n_atoms)


def sparsest_solutions_bruteforce(D: torch.Tensor, x: torch.Tensor, max_support: int, *, tol: float = 1e-9,
                                  stop_at_sparsest: bool = True, max_subsets: int = 200_000) -> BruteForceSolutions:
    r"""All representations of ``x`` with at most ``max_support`` atoms, found by enumerating supports.

    Solves :math:`\min_z \|z\|_0` s.t. :math:`Dz = x` exactly for small ``D``: for every support :math:`T` with
    :math:`|T| \le` ``max_support`` it least-squares fits :math:`x \approx D_T c` and keeps :math:`c` when the
    residual is at most ``tol``:math:`\cdot\max(1, \|x\|)` and every entry of :math:`c` is non-zero
    (so the support is exactly :math:`T`). With ``stop_at_sparsest`` it stops after the smallest size with
    a solution (the solutions of :math:`P_0`); otherwise it returns every size. Implements chapter 9,
    equation ``eq-p0``.
    """
    D = _check_dictionary(D)
    if not isinstance(x, torch.Tensor) or x.shape != (D.shape[0],):
        raise ValueError(f"x must be a tensor of shape (n_features={D.shape[0]},), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    max_support = check_int(max_support, "max_support", minimum=0, maximum=D.shape[1],
                            expected=f"an int in [0, n_atoms={D.shape[1]}]")
    tol = positive_number(tol, "tol")
    _check_size(D.shape[1], range(1, max_support + 1), max_subsets, "sparsest_solutions_bruteforce")
    x = x.detach().to(D.dtype)
    threshold = tol * max(1.0, float(x.norm()))
    if float(x.norm()) <= threshold:  # the zero code represents x
        return BruteForceSolutions(0, [()], torch.zeros(1, D.shape[1], dtype=D.dtype))
    supports_found, codes, sparsity = [], [], None
    for k in range(1, max_support + 1):
        for supports in _supports(D.shape[1], k):
            columns = _columns(D, supports)
            target = x.expand(len(supports), -1).unsqueeze(-1)
            # pseudo-inverse (not lstsq): also correct for rank-deficient supports, on every backend
            coefficients = (torch.linalg.pinv(columns) @ target).squeeze(-1)
            residual = (target.squeeze(-1) - (columns @ coefficients.unsqueeze(-1)).squeeze(-1)).norm(dim=1)
            keep = (residual <= threshold) & (coefficients.abs() > threshold).all(dim=1)
            for row in keep.nonzero().flatten().tolist():
                code = torch.zeros(D.shape[1], dtype=D.dtype)
                code[supports[row]] = coefficients[row]
                supports_found.append(tuple(supports[row].tolist()))
                codes.append(code)
        if codes and sparsity is None:
            sparsity = k
            if stop_at_sparsest:
                break
    stacked = torch.stack(codes) if codes else torch.zeros(0, D.shape[1], dtype=D.dtype)
    return BruteForceSolutions(sparsity, supports_found, stacked)


@dataclass(frozen=True)
class WorstStableCode:
    """The farthest feasible code found by enumeration and its squared distance to the reference code."""
    error_sq: float
    code: torch.Tensor
    support: tuple


def _farthest_in_ellipsoid(c: torch.Tensor, lam: torch.Tensor, rho_sq: torch.Tensor, n_bisect: int = 200):
    # max_u sum_k (c_k + u_k)^2  s.t.  sum_k lam_k u_k^2 <= rho^2  (rows batched, eigen-coordinates of G,
    # lam ascending). A convex function is maximized on the boundary; the global maximizer is
    # u_k = c_k / (nu lam_k - 1) with nu >= 1/lam_min (the trust-region optimality condition), where
    # phi(nu) = sum_k lam_k u_k^2 decreases from +inf to 0 on (1/lam_min, inf): bisect phi(nu) = rho^2.
    lam_min = lam[:, :1]
    rho = rho_sq.clamp_min(0).sqrt().unsqueeze(1)
    tiny = torch.finfo(c.dtype).tiny
    low = 1.0 / lam_min
    # for nu >= 2/lam_min, phi(nu) <= 4 ||c||^2 / (nu^2 lam_min), which is <= rho^2 from the second term on
    high = torch.maximum(2.0 / lam_min, 2.0 * c.norm(dim=1, keepdim=True) / (rho * lam_min.sqrt()).clamp_min(tiny))
    for _ in range(n_bisect):
        middle = 0.5 * (low + high)
        phi = (lam * (c / (middle * lam - 1)) ** 2).sum(dim=1, keepdim=True)
        too_far = phi > rho ** 2
        low = torch.where(too_far, middle, low)
        high = torch.where(too_far, high, middle)
    u = c / (high * lam - 1)
    # the "hard case" (c orthogonal to the lam_min eigenvector): phi stays below rho^2 down to 1/lam_min,
    # and the rest of the budget goes along that eigenvector; in the generic case the slack is ~0
    slack = (rho.squeeze(1) ** 2 - (lam * u ** 2).sum(dim=1)).clamp_min(0)
    direction = torch.where(c[:, 0] + u[:, 0] >= 0, 1.0, -1.0).to(c.dtype)
    u[:, 0] = direction * (u[:, 0] ** 2 + slack / lam[:, 0]).sqrt()  # lam_0 u_0^2 grows by exactly the slack
    return torch.where(rho > 0, u, torch.zeros_like(u))


def worst_stable_code_bruteforce(D: torch.Tensor, x: torch.Tensor, code: torch.Tensor, eps: float, s: int, *,
                                 max_subsets: int = 200_000) -> WorstStableCode:
    r"""The worst sparse code consistent with the noisy signal, by enumeration of supports:

    .. math:: \max_{\hat\Gamma} \|\hat\Gamma - \Gamma\|_2^2 \quad \text{s.t.} \quad \|\hat\Gamma\|_0 \le s,\
              \|x - D\hat\Gamma\|_2 \le \varepsilon.

    Every support of size :math:`s` contributes an ellipsoid :math:`\{c : \|x - D_T c\| \le \varepsilon\}`
    (smaller supports are its faces); the farthest point of each from :math:`\Gamma` is found exactly
    (trust-region secular equation, bisection). ``code`` is the reference :math:`\Gamma`. Needs every
    :math:`s` columns independent (:math:`s < \operatorname{spark}(D)`). Checks chapter 9, equation
    ``eq-stability-bound``.
    """
    D = _check_dictionary(D)
    n_features, n_atoms = D.shape
    for value, name, size in ((x, "x", n_features), (code, "code", n_atoms)):
        if not isinstance(value, torch.Tensor) or value.shape != (size,):
            raise ValueError(f"{name} must be a tensor of shape ({size},)")
    eps = nonneg_number(eps, "eps")
    s = check_int(s, "s", minimum=1, maximum=min(n_atoms, n_features),
                  expected=f"an int in [1, min(n_features, n_atoms)={min(n_atoms, n_features)}]")
    _check_size(n_atoms, [s], max_subsets, "worst_stable_code_bruteforce")
    x, code = x.detach().to(D.dtype), code.detach().to(D.dtype)
    best = WorstStableCode(-math.inf, code.clone(), ())
    for supports in _supports(n_atoms, s):
        columns = _columns(D, supports)
        lam, basis = torch.linalg.eigh(columns.mT @ columns)
        if (lam[:, 0] <= 1e-12 * lam[:, -1]).any():
            raise ValueError(f"some {s} columns of D are linearly dependent (s >= spark): the worst case is unbounded")
        rhs = (basis.mT @ (columns.mT @ x).unsqueeze(-1)).squeeze(-1)
        least_squares = (basis @ (rhs / lam).unsqueeze(-1)).squeeze(-1)
        rho_sq = eps ** 2 - (x - (columns @ least_squares.unsqueeze(-1)).squeeze(-1)).pow(2).sum(dim=1)
        feasible = rho_sq >= 0
        if not feasible.any():
            continue
        supports, basis, lam = supports[feasible], basis[feasible], lam[feasible]
        least_squares, rho_sq = least_squares[feasible], rho_sq[feasible]
        on_support = code[supports]
        off_support_sq = code.pow(2).sum() - on_support.pow(2).sum(dim=1)
        offset = (basis.mT @ (least_squares - on_support).unsqueeze(-1)).squeeze(-1)
        step = _farthest_in_ellipsoid(offset, lam, rho_sq)
        values = off_support_sq + (offset + step).pow(2).sum(dim=1)
        row = int(values.argmax())
        if float(values[row]) > best.error_sq:
            worst = torch.zeros(n_atoms, dtype=D.dtype)
            worst[supports[row]] = least_squares[row] + basis[row] @ step[row]
            best = WorstStableCode(float(values[row]), worst, tuple(supports[row].tolist()))
    if best.error_sq == -math.inf:
        raise ValueError(f"no code with at most s={s} non-zeros fits x within eps={eps}")
    return best
