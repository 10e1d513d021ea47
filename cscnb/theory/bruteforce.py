r"""Exhaustive checks of the coherence bounds on small dictionaries (chapter 9).

Each function enumerates supports (sets of atoms) and is exact up to floating-point round-off, so
the chapter can compare a bound with the true worst case. The enumeration is exponential in the
number of atoms; every function refuses problems with more than ``max_subsets`` supports. The
functions that take ``supports`` enumerate a given family instead (for instance every support of a
convolutional dictionary with stripe norm at most :math:`s`, :func:`cscnb.theory.stripe_supports`).
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
    "BruteForceSolutions", "worst_stable_code_bruteforce", "WorstStableCode", "exact_representations_bruteforce",
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


def smallest_gram_eigenvalue(D: torch.Tensor, support_batches) -> tuple:
    r"""Smallest eigenvalue of :math:`D_T^\top D_T` over the supports :math:`T` of ``support_batches`` (each a
    ``(batch, k)`` tensor of column indices), and a unit vector (length ``n_atoms``, supported on the minimizing
    :math:`T`) attaining it; ``(inf, None)`` when there is no support. Shared by the exhaustive restricted
    eigenvalues of chapter 9 (global and stripe supports)."""
    smallest, vector = math.inf, None
    for supports in support_batches:
        columns = _columns(D, supports)
        eigenvalues, eigenvectors = torch.linalg.eigh(columns.mT @ columns)
        row = int(eigenvalues[:, 0].argmin())
        if float(eigenvalues[row, 0]) < smallest:
            smallest = float(eigenvalues[row, 0])
            vector = torch.zeros(D.shape[1], dtype=D.dtype)
            vector[supports[row]] = eigenvectors[row, :, 0]
    return max(smallest, 0.0), vector  # a singular Gram can come out as -1e-17


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

    .. math:: \lambda_k(D) = \min_{|T| = k} \lambda_{\min}(D_T^\top D_T)
              = \min_{\|v\|_0 \le k,\, v \ne 0} \|Dv\|^2/\|v\|^2

    (the two agree because removing columns cannot lower :math:`\lambda_{\min}`, by interlacing). For
    unit-norm atoms Gershgorin gives :math:`\lambda_k \ge 1 - \mu(k - 1)`. With ``return_vector`` also
    returns a unit vector :math:`v` (length ``n_atoms``, at most :math:`k` non-zeros) attaining it.
    Implements chapter 9, equation ``eq-restricted-eigenvalue``.
    """
    D = _check_dictionary(D)
    k = check_int(k, "k", minimum=1, maximum=D.shape[1], expected=f"an int in [1, n_atoms={D.shape[1]}]")
    _check_size(D.shape[1], [k], max_subsets, "restricted_min_eigenvalue_bruteforce")
    smallest, vector = smallest_gram_eigenvalue(D, _supports(D.shape[1], k))
    return (smallest, vector) if return_vector else smallest


@dataclass(frozen=True)
class BruteForceSolutions:
    """Exact representations ``x = D z`` found by enumeration: ``codes[r]`` has support ``supports[r]``."""
    sparsity: int | None          # smallest support size with an exact representation (None: none found)
    supports: list
    codes: torch.Tensor           # (n_solutions, n_atoms)


def _check_signal(x, n_features: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor of shape (n_features={n_features},), got {type(x).__name__}")
    if x.shape != (n_features,):
        raise ValueError(f"x must be a tensor of shape (n_features={n_features},), got {tuple(x.shape)}")
    return x.detach()


def sparsest_solutions_bruteforce(D: torch.Tensor, x: torch.Tensor, max_support: int, *, tol: float = 1e-9,
                                  stop_at_sparsest: bool = True, max_subsets: int = 200_000) -> BruteForceSolutions:
    r"""The representations of ``x`` with at most ``max_support`` atoms, found by enumerating supports.

    Solves :math:`\min_z \|z\|_0` s.t. :math:`Dz = x` exactly for small ``D``: for every support :math:`T` with
    :math:`|T| \le` ``max_support`` it least-squares fits :math:`x \approx D_T c` and keeps :math:`c` when the
    residual is at most ``tol``:math:`\cdot\max(1, \|x\|)` and every entry of :math:`c` is non-zero
    (so the support is exactly :math:`T`). With ``stop_at_sparsest`` it stops after the smallest size with
    a solution (the solutions of :math:`P_0`); otherwise it returns every size. Implements chapter 9,
    equation ``eq-p0``.

    The list is complete when every enumerated support has independent columns, in particular when
    ``max_support < spark(D)``, and always at the sparsest size (a dependent support that represents
    ``x`` contains a smaller one that does). A support with dependent columns that represents ``x``
    carries infinitely many representations; with ``stop_at_sparsest=False`` such a support beyond the
    sparsest size raises ``ValueError`` instead of returning an incomplete list.
    """
    D = _check_dictionary(D)
    x = _check_signal(x, D.shape[0]).to(D.dtype)
    max_support = check_int(max_support, "max_support", minimum=0, maximum=D.shape[1],
                            expected=f"an int in [0, n_atoms={D.shape[1]}]")
    tol = positive_number(tol, "tol")
    _check_size(D.shape[1], range(1, max_support + 1), max_subsets, "sparsest_solutions_bruteforce")
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
            represents = residual <= threshold
            if sparsity is not None and represents.any():
                dependent = torch.linalg.matrix_rank(columns[represents]) < k
                if dependent.any():
                    bad = tuple(supports[represents][dependent][0].tolist())
                    raise ValueError(f"support {bad} has linearly dependent columns and represents x: x has "
                                     f"infinitely many representations with {k} atoms (max_support >= spark(D))")
            keep = represents & (coefficients.abs() > threshold).all(dim=1)
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


def _support_batches(supports, what: str):
    # a family of supports (tuples of column indices) as LongTensor batches of equal size
    if isinstance(supports, (str, bytes)) or not hasattr(supports, "__iter__"):
        raise TypeError(f"supports must be a list of tuples of column indices, got {type(supports).__name__}")
    by_size = {}
    for support in supports:
        support = tuple(support)
        if support:
            by_size.setdefault(len(support), []).append(support)
    if not by_size:
        raise ValueError(f"{what}: supports holds no non-empty support")
    for size, group in sorted(by_size.items()):
        for start in range(0, len(group), _CHUNK):
            yield torch.tensor(group[start:start + _CHUNK], dtype=torch.long).reshape(-1, size)


def exact_representations_bruteforce(D: torch.Tensor, x: torch.Tensor, supports, *, tol: float = 1e-9) -> torch.Tensor:
    r"""Every code :math:`z` with :math:`Dz = x` whose support lies inside one of ``supports``, by enumeration.

    For each support :math:`T` of the family it least-squares fits :math:`x \approx D_T c`; when the residual is at
    most ``tol``:math:`\cdot\max(1, \|x\|)`, :math:`c` (zeros allowed) is an exact representation, and it is the
    only one on :math:`T` if :math:`D_T` has independent columns. A representing support with dependent columns
    (infinitely many representations) raises ``ValueError``. Passing the maximal supports of a family closed
    under taking subsets (for instance :func:`cscnb.theory.stripe_supports` with ``maximal=True``) covers every
    member. Returns the distinct codes found, shape ``(n_codes, n_atoms)`` (rows that agree to ``tol`` merged).
    Checks chapter 9, ``thm-ch9-stripe``.
    """
    D = _check_dictionary(D)
    x = _check_signal(x, D.shape[0]).to(D.dtype)
    tol = positive_number(tol, "tol")
    threshold = tol * max(1.0, float(x.norm()))
    codes = []
    for batch in _support_batches(supports, "exact_representations_bruteforce"):
        columns = _columns(D, batch)
        target = x.expand(len(batch), -1).unsqueeze(-1)
        coefficients = (torch.linalg.pinv(columns) @ target).squeeze(-1)
        residual = (target.squeeze(-1) - (columns @ coefficients.unsqueeze(-1)).squeeze(-1)).norm(dim=1)
        represents = residual <= threshold
        if not represents.any():
            continue
        if (torch.linalg.matrix_rank(columns[represents]) < batch.shape[1]).any():
            raise ValueError("a support with linearly dependent columns represents x: infinitely many representations")
        for row in represents.nonzero().flatten().tolist():
            code = torch.zeros(D.shape[1], dtype=D.dtype)
            code[batch[row]] = coefficients[row]
            if not any(float((code - c).abs().max()) <= threshold for c in codes):
                codes.append(code)
    return torch.stack(codes) if codes else torch.zeros(0, D.shape[1], dtype=D.dtype)


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




def worst_stable_code_bruteforce(D: torch.Tensor, x: torch.Tensor, code: torch.Tensor, eps: float, s: int | None, *,
                                 supports=None, max_subsets: int = 200_000) -> WorstStableCode:
    r"""The worst sparse code consistent with the noisy signal, by enumeration of supports:

    .. math:: \max_{\hat\Gamma} \|\hat\Gamma - \Gamma\|_2^2 \quad \text{s.t.} \quad \|\hat\Gamma\|_0 \le s,\
              \|x - D\hat\Gamma\|_2 \le \varepsilon.

    Every support of size :math:`s` contributes an ellipsoid :math:`\{c : \|x - D_T c\| \le \varepsilon\}`
    (smaller supports are its faces); the farthest point of each from :math:`\Gamma` is found exactly
    (trust-region secular equation, bisection). ``code`` is the reference :math:`\Gamma`. Needs every
    :math:`s` columns independent (:math:`s < \operatorname{spark}(D)`). With ``supports`` (and ``s=None``)
    the constraint :math:`\|\hat\Gamma\|_0 \le s` is replaced by "the support of :math:`\hat\Gamma` lies in one
    of ``supports``" (for instance the maximal supports with stripe norm at most :math:`s`,
    :func:`cscnb.theory.stripe_supports`). Checks chapter 9, equations ``eq-stability-bound`` and
    ``eq-ch9-stripe-stability``.
    """
    D = _check_dictionary(D)
    n_features, n_atoms = D.shape
    x = _check_signal(x, n_features)
    if not isinstance(code, torch.Tensor):
        raise TypeError(f"code must be a torch.Tensor of shape ({n_atoms},), got {type(code).__name__}")
    if code.shape != (n_atoms,):
        raise ValueError(f"code must have shape ({n_atoms},), got {tuple(code.shape)}")
    eps = nonneg_number(eps, "eps")
    if supports is None:
        s = check_int(s, "s", minimum=1, maximum=min(n_atoms, n_features),
                      expected=f"an int in [1, min(n_features, n_atoms)={min(n_atoms, n_features)}]")
        _check_size(n_atoms, [s], max_subsets, "worst_stable_code_bruteforce")
        batches = _supports(n_atoms, s)
    else:
        if s is not None:
            raise ValueError("pass either s (every support of size s) or supports, not both")
        batches = _support_batches(supports, "worst_stable_code_bruteforce")
    x, code = x.to(D.dtype), code.detach().to(D.dtype)
    best = WorstStableCode(-math.inf, code.clone(), ())
    for batch in batches:
        columns = _columns(D, batch)
        lam, basis = torch.linalg.eigh(columns.mT @ columns)
        if (lam[:, 0] <= 1e-12 * lam[:, -1]).any():
            raise ValueError(f"some supports of {batch.shape[1]} columns of D are linearly dependent "
                             "(s >= spark): the worst case is unbounded")
        rhs = (basis.mT @ (columns.mT @ x).unsqueeze(-1)).squeeze(-1)
        least_squares = (basis @ (rhs / lam).unsqueeze(-1)).squeeze(-1)
        rho_sq = eps ** 2 - (x - (columns @ least_squares.unsqueeze(-1)).squeeze(-1)).pow(2).sum(dim=1)
        feasible = rho_sq >= 0
        if not feasible.any():
            continue
        batch, basis, lam = batch[feasible], basis[feasible], lam[feasible]
        least_squares, rho_sq = least_squares[feasible], rho_sq[feasible]
        on_support = code[batch]
        off_support_sq = code.pow(2).sum() - on_support.pow(2).sum(dim=1)
        offset = (basis.mT @ (least_squares - on_support).unsqueeze(-1)).squeeze(-1)
        step = _farthest_in_ellipsoid(offset, lam, rho_sq)
        values = off_support_sq + (offset + step).pow(2).sum(dim=1)
        row = int(values.argmax())
        if float(values[row]) > best.error_sq:
            worst = torch.zeros(n_atoms, dtype=D.dtype)
            worst[batch[row]] = least_squares[row] + basis[row] @ step[row]
            best = WorstStableCode(float(values[row]), worst, tuple(batch[row].tolist()))
    if best.error_sq == -math.inf:
        what = f"no code with at most s={s} non-zeros" if supports is None else "no code on the given supports"
        raise ValueError(f"{what} fits x within eps={eps}")
    return best
