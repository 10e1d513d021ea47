r"""SymPy helpers shared by the chapters: MAP objectives, scalar proximal maps derived by cases,
deciding a case's condition on a parametrized region, and turning a derived expression into a
torch function so that a chapter can compare its derivation with the ``cscnb`` solvers.

Nothing here is numerical: each function builds or manipulates SymPy expressions, except
:func:`lambdify_torch`, whose output evaluates an expression on torch tensors.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sympy as sp
import torch

__all__ = [
    "Case", "gaussian_neg_log_likelihood", "neg_log_posterior", "drop_constant_terms",
    "scalar_prox_by_cases", "box_kkt_cases", "cases_to_piecewise", "decide", "evaluate_piecewise",
    "lambdify_torch",
]


@dataclass(frozen=True)
class Case:
    """One case of a derivation by cases: on ``condition`` (a SymPy boolean) the answer is ``value``."""
    name: str
    value: sp.Expr
    condition: sp.Basic


# ---------------------------------------------------------------------------------------------
# MAP objectives (chapter 1, eq-generative-model and eq-map-objective)

def _as_matrix(obj, name: str) -> sp.Matrix:
    if isinstance(obj, sp.MatrixBase):
        return sp.Matrix(obj)
    if isinstance(obj, (list, tuple)):
        return sp.Matrix(obj)
    raise TypeError(f"{name} must be a SymPy Matrix or a list of symbols, got {type(obj).__name__}")


def gaussian_neg_log_likelihood(x, D, z, sigma) -> sp.Expr:
    r"""Negative log-likelihood of the generative model :math:`x = Dz + \varepsilon`,
    :math:`\varepsilon \sim \mathcal N(0, \sigma^2 I_n)`:

    .. math:: -\log p(x \mid z) = \frac{1}{2\sigma^2}\|x - Dz\|_2^2 + \frac n2 \log(2\pi\sigma^2).

    ``x`` (length n) and ``z`` (length m) are column vectors of symbols, ``D`` an n×m SymPy matrix.
    Implements chapter 1, equation ``eq-generative-model``.
    """
    x, z, D = _as_matrix(x, "x"), _as_matrix(z, "z"), _as_matrix(D, "D")
    if D.shape != (x.shape[0], z.shape[0]):
        raise ValueError(f"D must have shape (len(x), len(z)) = ({x.shape[0]}, {z.shape[0]}), got {D.shape}")
    residual = x - D * z
    n = x.shape[0]
    return (residual.T * residual)[0, 0] / (2 * sigma**2) + sp.Rational(n, 2) * sp.log(2 * sp.pi * sigma**2)


def neg_log_posterior(x, D, z, sigma, log_prior: Callable[[sp.Expr], sp.Expr] | Sequence[Callable]) -> sp.Expr:
    r"""Negative log posterior up to :math:`\log p(x)`, for a prior that factorizes over the code:

    .. math:: -\log p(z \mid x) + \text{const}
              = \frac{1}{2\sigma^2}\|x - Dz\|_2^2 - \sum_i \log p_i(z_i) + \text{const}.

    ``log_prior`` maps a coefficient symbol to its log density (one callable for i.i.d. coefficients,
    or one per coefficient). Minimizing it gives the MAP code of chapter 1, ``eq-map-objective``,
    and of chapter 2 (per-coefficient exponential priors, ``eq-relu-bias``).
    """
    z = _as_matrix(z, "z")
    priors = list(log_prior) if isinstance(log_prior, (list, tuple)) else [log_prior] * z.shape[0]
    if len(priors) != z.shape[0]:
        raise ValueError(f"log_prior must be one callable or one per coefficient ({z.shape[0]}), got {len(priors)}")
    if not all(callable(p) for p in priors):
        raise TypeError("log_prior must be a callable (coefficient symbol -> log density) or a list of them")
    return gaussian_neg_log_likelihood(x, D, z, sigma) - sum(p(zi) for p, zi in zip(priors, z, strict=True))


def drop_constant_terms(expr: sp.Expr, variables: Sequence[sp.Symbol]) -> sp.Expr:
    """The additive terms of ``expr`` (after expansion) that depend on ``variables``.

    Minimizers over ``variables`` are unchanged; used to reduce a negative log posterior to the
    objective of chapter 1, ``eq-map-objective``.
    """
    if not variables:
        raise ValueError("variables must name at least one symbol")
    expanded = sp.expand(expr)
    return sp.Add(*[term for term in sp.Add.make_args(expanded) if term.free_symbols & set(variables)])


def _check_symbols(**named):
    for name, value in named.items():
        if not isinstance(value, sp.Symbol):
            raise TypeError(f"{name} must be a SymPy Symbol, got {type(value).__name__}")


# ---------------------------------------------------------------------------------------------
# scalar proximal maps by cases (chapter 1 eq-soft-threshold, chapter 2 eq-relu-bias and eq-kkt)

def scalar_prox_by_cases(y: sp.Symbol, a: sp.Symbol, pieces) -> list[Case]:
    r"""Derive :math:`\argmin_a \tfrac12 (y - a)^2 + g(a)` by cases, for a convex penalty :math:`g`
    that is smooth on each of a few contiguous intervals (and :math:`+\infty` outside their union).

    ``pieces`` is a list of ``(g_k(a), lo_k, hi_k)`` with ``hi_k == lo_{k+1}`` (use ``sp.oo`` for
    unbounded ends). Two kinds of candidate minimizer are derived:

    * interior of piece k: the unique root of :math:`\partial_a[\tfrac12(y-a)^2 + g_k(a)] = 0`, valid
      when it lies strictly inside :math:`(lo_k, hi_k)`;
    * a breakpoint p (or a finite end of the domain): optimal when :math:`0` lies in the
      subdifferential, i.e. left derivative :math:`\le 0 \le` right derivative (an infinite
      penalty outside the domain makes the outer one-sided derivative :math:`\mp\infty`).

    For a convex objective these conditions are also sufficient, so the cases list the minimizer.
    Implements chapter 1, ``eq-soft-threshold`` (and the ReLU maps of chapter 2).
    """
    _check_symbols(y=y, a=a)
    if not pieces:
        raise ValueError("pieces must list at least one (penalty, lo, hi) interval")
    for k in range(len(pieces) - 1):
        if sp.simplify(pieces[k][2] - pieces[k + 1][1]) != 0:
            raise ValueError(f"pieces must be contiguous: piece {k} ends at {pieces[k][2]}, "
                             f"piece {k + 1} starts at {pieces[k + 1][1]}")
    objective_pieces = [sp.Rational(1, 2) * (y - a) ** 2 + g for g, _, _ in pieces]
    cases = []
    for k, (f_k, (_, lo, hi)) in enumerate(zip(objective_pieces, pieces, strict=True)):
        roots = sp.solve(sp.Eq(sp.diff(f_k, a), 0), a)
        if len(roots) != 1:
            raise ValueError(f"piece {k}: expected one stationary point, found {roots}; is the penalty convex?")
        root = sp.simplify(roots[0])
        cases.append(Case(f"interior of piece {k}", root, sp.And(root > lo, root < hi)))
    breakpoints = [(pieces[0][1], None, 0)] + [(pieces[k][2], k, k + 1) for k in range(len(pieces) - 1)]
    breakpoints += [(pieces[-1][2], len(pieces) - 1, None)]
    for p, left, right in breakpoints:
        if p in (sp.oo, -sp.oo):
            continue
        d_left = -sp.oo if left is None else sp.diff(objective_pieces[left], a).subs(a, p)
        d_right = sp.oo if right is None else sp.diff(objective_pieces[right], a).subs(a, p)
        cases.append(Case(f"a = {p}", sp.sympify(p), sp.And(d_left <= 0, d_right >= 0)))
    return cases


def box_kkt_cases(objective: sp.Expr, a: sp.Symbol, lower=None, upper=None) -> list[Case]:
    r"""Solve :math:`\min_a f(a)` s.t. :math:`\text{lower} \le a \le \text{upper}` through the KKT
    conditions, enumerating which constraints are active (complementary slackness).

    Lagrangian :math:`\mathcal L = f(a) - \nu_\ell (a - \text{lower}) - \nu_u(\text{upper} - a)`,
    stationarity :math:`\partial_a \mathcal L = 0`, dual feasibility :math:`\nu \ge 0`, primal
    feasibility, and :math:`\nu_\ell(a - \text{lower}) = \nu_u(\text{upper} - a) = 0`.
    Each returned case's condition collects primal and dual feasibility with the multipliers
    eliminated. ``f`` must be smooth and convex in ``a`` (one stationary point).
    Implements chapter 2, equation ``eq-kkt``.
    """
    _check_symbols(a=a)
    if not isinstance(objective, sp.Expr):
        raise TypeError(f"objective must be a SymPy expression, got {type(objective).__name__}")
    if lower is None and upper is None:
        raise ValueError("give at least one of lower, upper (without constraints use sp.solve)")
    nu_l, nu_u = sp.symbols("nu_lower nu_upper", real=True)
    lagrangian = objective
    if lower is not None:
        lagrangian -= nu_l * (a - lower)
    if upper is not None:
        lagrangian -= nu_u * (upper - a)
    stationarity = sp.diff(lagrangian, a)
    cases = []
    # inactive constraints: both multipliers vanish by complementary slackness
    free = sp.solve(sp.Eq(stationarity.subs({nu_l: 0, nu_u: 0}), 0), a)
    if len(free) != 1:
        raise ValueError(f"expected one stationary point of the objective, found {free}; is it convex?")
    feasible = [cond for cond in ((free[0] >= lower) if lower is not None else None,
                                  (free[0] <= upper) if upper is not None else None) if cond is not None]
    cases.append(Case("no constraint active", sp.simplify(free[0]), sp.And(*feasible)))
    for bound, nu, other in ((lower, nu_l, nu_u), (upper, nu_u, nu_l)):
        if bound is None:
            continue
        # the active bound fixes a; stationarity then fixes its multiplier, which must be >= 0
        multiplier = sp.solve(sp.Eq(stationarity.subs({a: bound, other: 0}), 0), nu)[0]
        name = "lower bound active" if nu is nu_l else "upper bound active"
        cases.append(Case(name, sp.sympify(bound), sp.simplify(multiplier) >= 0))
    return cases


def cases_to_piecewise(cases: Sequence[Case]) -> sp.Piecewise:
    """Combine cases into one ``sp.Piecewise`` (the last case becomes the default branch).

    The last case's condition is dropped, so the Piecewise alone cannot show that the cases cover
    every input: check coverage by deciding *every* case's condition on each region (:func:`decide`),
    as chapters 1–3 do. With :func:`scalar_prox_by_cases` and :func:`box_kkt_cases` on convex problems
    the cases partition the line up to shared boundaries.
    Builds the piecewise maps of chapter 1 (``eq-soft-threshold``) and chapter 2 (``eq-relu-bias``,
    ``eq-ch2-clipped-relu``).
    """
    if not cases:
        raise ValueError("cases must not be empty")
    branches = [(c.value, c.condition) for c in cases[:-1]]
    return sp.Piecewise(*branches, (cases[-1].value, True))


# ---------------------------------------------------------------------------------------------
# symbolic verification on parametrized regions

def decide(condition) -> bool | None:
    """Truth value of a SymPy condition under the symbols' assumptions, or ``None`` if undecided.

    Relations are decided by the sign of ``simplify(lhs - rhs)``; And/Or/Not recursively. Used to
    evaluate a case's condition after substituting a parametrization of a region (e.g.
    ``y = t + s`` with ``s > 0`` for the region ``y > t``). Chapters 1 and 2 use it to prove
    ``eq-soft-threshold`` and ``eq-ch2-clipped-relu`` region by region.
    """
    condition = sp.sympify(condition)
    if condition in (sp.true, sp.false):
        return bool(condition)
    if isinstance(condition, sp.And):
        values = [decide(c) for c in condition.args]
        return False if False in values else (None if None in values else True)
    if isinstance(condition, sp.Or):
        values = [decide(c) for c in condition.args]
        return True if True in values else (None if None in values else False)
    if isinstance(condition, sp.Not):
        value = decide(condition.args[0])
        return None if value is None else not value
    if isinstance(condition, sp.core.relational.Relational):
        diff = sp.simplify(condition.lhs - condition.rhs)
        sign_tests = {sp.StrictGreaterThan: (diff.is_positive, diff.is_nonpositive),
                      sp.GreaterThan: (diff.is_nonnegative, diff.is_negative),
                      sp.StrictLessThan: (diff.is_negative, diff.is_nonnegative),
                      sp.LessThan: (diff.is_nonpositive, diff.is_positive),
                      sp.Eq: (diff.is_zero, diff.is_nonzero)}
        if type(condition) not in sign_tests:
            raise TypeError(f"cannot decide a relation of type {type(condition).__name__}")
        holds, fails = sign_tests[type(condition)]
        return True if holds else (False if fails else None)
    raise TypeError(f"condition must be a SymPy boolean or relation, got {type(condition).__name__}")


def evaluate_piecewise(expr: sp.Piecewise, substitution: dict) -> sp.Expr:
    r"""The branch of ``expr`` selected after ``substitution``, simplified.

    Every condition before the selected one must be decidedly false (:func:`decide`); an undecided
    condition raises ``ValueError`` rather than guessing. This is how chapter 1 shows that the
    derived prox equals :math:`\operatorname{sign}(y)\max(|y| - t, 0)` (``eq-soft-threshold``) on each region.
    """
    if not isinstance(expr, sp.Piecewise):
        raise TypeError(f"expr must be a sympy Piecewise, got {type(expr).__name__}")
    for value, condition in expr.args:
        verdict = decide(condition.subs(substitution))
        if verdict is None:
            raise ValueError(f"cannot decide {condition} under {substitution}; refine the parametrization")
        if verdict:
            return sp.simplify(value.subs(substitution))
    raise ValueError(f"no branch of the Piecewise holds under {substitution}")


# ---------------------------------------------------------------------------------------------
# from SymPy to torch

def _elementwise_extreme(reduce_pair):
    # sympy prints Max/Min as max(...)/min(...) over a mix of numbers and tensors;
    # torch.maximum/minimum promote the dtypes of 0-d tensors made from the numbers
    def extreme(*args):
        out = torch.as_tensor(args[0])
        for value in args[1:]:
            out = reduce_pair(out, torch.as_tensor(value))
        return out
    return extreme


_max, _min = _elementwise_extreme(torch.maximum), _elementwise_extreme(torch.minimum)


def lambdify_torch(expr: sp.Expr, symbols: Sequence[sp.Symbol]) -> Callable[..., torch.Tensor]:
    """Turn a SymPy expression into an elementwise torch function of ``symbols`` (in that order).

    Arguments are tensors or numbers that broadcast together; the result always has their broadcast
    shape and the floating dtype of the tensor arguments (a constant branch such as ``0`` is
    broadcast too). ``Piecewise`` becomes nested ``torch.where``; ``Max``/``Min`` accept numbers.
    Used by every chapter to compare a derived closed form with ``cscnb`` (e.g. chapter 1,
    ``eq-soft-threshold``).
    """
    if not isinstance(expr, sp.Basic):
        raise TypeError(f"expr must be a SymPy expression, got {type(expr).__name__}")
    symbols = list(symbols)
    if not all(isinstance(s, sp.Symbol) for s in symbols):
        raise TypeError("symbols must be SymPy symbols")
    missing = expr.free_symbols - set(symbols)
    if missing:
        raise ValueError(f"symbols must include every free symbol of expr; missing {sorted(map(str, missing))}")
    raw = sp.lambdify(symbols, expr, modules=[{"max": _max, "min": _min, "amax": _max, "amin": _min}, "torch"])

    def evaluate(*args):
        if len(args) != len(symbols):
            raise TypeError(f"expected {len(symbols)} arguments ({', '.join(map(str, symbols))}), got {len(args)}")
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.get_default_dtype())
        device = tensors[0].device if tensors else None
        inputs = [torch.as_tensor(a, dtype=dtype, device=device) for a in args]
        shape = torch.broadcast_shapes(*(t.shape for t in inputs))
        out = torch.as_tensor(raw(*inputs), dtype=dtype, device=device)
        return out.expand(shape).clone()

    evaluate.__doc__ = f"torch version of {expr} as a function of ({', '.join(map(str, symbols))})"
    return evaluate
