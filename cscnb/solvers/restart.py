r"""Fast, non-textbook sparse coding: restarted FISTA with batch shrinking and an exact support polish.

:func:`cscnb.solve` dispatches here for ``method="fista_restart"``. The textbook ``"ista"`` and
``"fista"`` iterations (chapter 5, ``eq-ista``/``eq-fista``) stay in :mod:`cscnb.solvers`; this
module changes the iterates to reach the same minimizer sooner:

* **adaptive restart** (O'Donoghue and Candès, 2015, gradient scheme): the momentum of a sample
  is reset whenever :math:`(y_{k-1} - z_k)^\top(z_k - z_{k-1}) > 0`, i.e. when the momentum
  points uphill;
* **batch shrinking**: every ``check_every`` iterations samples whose relative change fell below
  ``tol`` leave the batch, so the remaining iterations cost only what the hard samples need;
* **support polish** (``polish=True``, dense dictionaries): once a sample's support :math:`S` and
  signs :math:`s` are unchanged between two checks, the reduced optimality system
  :math:`(D_S^\top D_S + \mu I)\,z_S = D_S^\top x - \lambda_S \odot s` is solved exactly and the
  result is accepted only if it satisfies the full optimality conditions (chapter 2, ``eq-kkt``):
  sign-consistent on :math:`S` and, off it, :math:`|d_i^\top(x - Dz)| \le \lambda_i + \texttt{tol}\cdot
  \max(\lambda_i, \|D^\top(x - Dz)\|_\infty)` (signed for ``nonneg``).
  An accepted polish meets the optimality conditions on :math:`S` up to rounding and off :math:`S`
  within that ``tol`` (an exact minimizer when the off-support inequalities hold with no slack),
  whatever precision found the support, so the identification iterations may run in a cheaper
  ``iterate_dtype`` (e.g. float32);
* **working-set pass** (``polish=True`` from :math:`z_0 = 0`): before any FISTA iteration, each
  sample's support is guessed by a few coordinate-descent sweeps restricted to its most correlated
  atoms, then refined by active-set rounds of the same verified polish (sign flips leave the
  support, the worst violators of the off-support condition join it). Only verified codes are kept;
  the other samples run the FISTA iterations above from their guess. On sparse problems most
  samples never need a full-size iteration (``benchmarks/bench_solvers.py``, problem (a)).
"""
from __future__ import annotations

import torch

from ..core.dictionary import LinearDictionary
from ..core.prox import elastic_net_prox
from .engine import proximal_gradient

__all__ = ["restarted_fista"]


def _per_sample(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _rows(lam_t: torch.Tensor, rows: torch.Tensor, batch: int, code_ndim: int) -> torch.Tensor:
    """λ for a subset of samples: only a λ with a batch dimension needs indexing.

    A per-atom λ has fewer dimensions than the code (``(m,)`` or ``(m, 1, 1)``), so it is never
    mistaken for a per-sample one, even when ``n_atoms == batch``.
    """
    if lam_t.ndim == code_ndim and lam_t.shape[0] == batch and batch > 1:
        return lam_t[rows]
    return lam_t


class _SupportPolish:
    """Exact solve on a stable support, verified against the full optimality conditions."""

    def __init__(self, dictionary: LinearDictionary, x, analysis_of_x, lam_t, mu, nonneg, tol):
        self.weight, self.x, self.analysis_of_x = dictionary.weight, x, analysis_of_x
        self.gram = self.weight.T @ self.weight
        self.lam_full = lam_t.expand(analysis_of_x.shape)
        # a scalar or per-atom λ broadcasts in the check; only a per-sample λ is indexed by sample
        self.lam_shared = lam_t if lam_t.ndim < 2 else None
        self.mu, self.nonneg, self.tol = mu, nonneg, tol
        # a support larger than n_features cannot have a positive-definite D_Sᵀ D_S (unless μ > 0)
        self.max_support = self.weight.shape[0] if mu == 0 else self.weight.shape[1]
        self.rounds = 3
        # atoms added per failed round: only the worst violators (an active-set step); adding every
        # violator of a poor guess makes the next systems large, and most of those atoms end at 0
        self.max_new_atoms = 2

    def __call__(self, rows: torch.Tensor, z_work: torch.Tensor, candidates: torch.Tensor, rounds: int | None = None,
                 give_up_below: float = 0.0):
        """Optimal codes for some of ``rows[candidates]``: (their positions among the candidates, codes).

        Starts from the iterate's support and signs; a failed check drops the atoms whose sign
        flipped and adds the worst atoms that violate the off-support condition, for a few rounds.
        These updates only steer which supports are tried: a code is returned only if it passes
        the full optimality check. Stops early after a round that finishes fewer than
        ``give_up_below`` of its samples (a fraction): on problems whose solutions are not sparse the
        rounds would only cost time.
        """
        cand_rows = rows[candidates]
        z = z_work[candidates].to(self.x.dtype)
        # int8 signs: the full (batch, n_atoms) arrays are indexed every round, so keep them small
        support, signs = z != 0, torch.sign(z).to(torch.int8)
        pending = torch.arange(z.shape[0], device=z.device)
        found_idx, found_codes = [], []
        for _round in range(self.rounds if rounds is None else rounds):
            sizes = support.sum(dim=1)
            usable = (sizes > 0) & (sizes <= self.max_support)
            if not bool(usable.all()):
                pending, support, signs = pending[usable], support[usable], signs[usable]
            if pending.numel() == 0:
                break
            sample = cand_rows[pending]
            polished, ok, (drop_rows, drop_atoms), (failed, join_atoms, joins, join_signs) = \
                self._solve_and_check(sample, support, signs)
            found_idx.append(pending[ok])
            found_codes.append(polished[ok])
            if give_up_below and int(ok.sum()) < give_up_below * pending.numel():
                pending = pending[:0]
                break
            support = support.index_put_((drop_rows, drop_atoms), torch.zeros((), dtype=torch.bool, device=z.device))
            pending, support, signs = pending[failed], support[failed], signs[failed]
            support.scatter_(1, join_atoms, joins | support.gather(1, join_atoms))
            signs.scatter_(1, join_atoms, torch.where(joins, join_signs, signs.gather(1, join_atoms)))
        if not found_idx:
            return pending[:0], z[:0]
        return torch.cat(found_idx), torch.cat(found_codes)

    def _solve_and_check(self, sample, support, signs):
        """Polished codes, which pass, the atoms to drop (sign flipped) and, per failed sample, to add.

        Returns ``(polished, ok, (drop_rows, drop_atoms), (failed, join_atoms, joins, join_signs))``:
        ``failed`` indexes the samples that did not pass; ``join_atoms`` are their worst few
        off-support atoms, of which those with ``joins`` violate the check and enter with ``join_signs``.
        """
        batch, n_atoms = support.shape
        dtype, device = self.x.dtype, support.device
        sizes = support.sum(dim=1)
        k = int(sizes.max())
        # each sample's atoms packed into slots 0..|S|-1 (nonzero() is row-major, so in atom order);
        # everything below works on these (batch, k) slots, and on full rows only for the check
        row_of, atom_of = support.nonzero(as_tuple=True)
        slot_of = torch.arange(row_of.numel(), device=device) - (torch.cumsum(sizes, 0) - sizes)[row_of]
        order = torch.zeros(batch, k, dtype=torch.long, device=device).index_put_((row_of, slot_of), atom_of)
        in_support = torch.zeros(batch, k, dtype=torch.bool, device=device).index_put_(
            (row_of, slot_of), torch.ones((), dtype=torch.bool, device=device))
        valid = in_support.to(dtype)
        signs_s = torch.gather(signs, 1, order).to(dtype) * valid
        lam_s = self.lam_full[sample.unsqueeze(1), order]
        gram_s = torch.take(self.gram, order.unsqueeze(2) * n_atoms + order.unsqueeze(1))
        # padding rows/columns become identity so that every small system stays solvable
        gram_s = gram_s * valid.unsqueeze(2) * valid.unsqueeze(1) + torch.diag_embed(1 - valid + self.mu * valid)
        rhs = (self.analysis_of_x[sample.unsqueeze(1), order] - lam_s * signs_s) * valid
        chol, info = torch.linalg.cholesky_ex(gram_s)
        z_s = torch.cholesky_solve(rhs.unsqueeze(2), chol).squeeze(2)
        polished = torch.zeros(batch, n_atoms, dtype=z_s.dtype, device=device).index_put(
            (row_of, atom_of), z_s[row_of, slot_of])
        with torch.no_grad():
            flipped_s = in_support & (torch.sign(z_s) != signs_s)
            correlation = (self.x[sample] - polished @ self.weight.T) @ self.weight
            if self.mu:
                correlation = correlation - self.mu * polished
            lam = self.lam_shared if self.lam_shared is not None else self.lam_full[sample]
            # off the support: |d_iᵀ r| ≤ λ_i + slack (signed for nonneg); the slack is tol relative to
            # λ and, where λ_i = 0, to the correlation scale
            off = correlation.abs()
            scale = off.amax(dim=1, keepdim=True).clamp_min(1e-30)
            if self.nonneg:
                off = correlation.clone()
            excess = off.masked_fill_(support, -float("inf")).sub_(lam + self.tol * torch.maximum(lam, scale))
            ok = (info == 0) & ~flipped_s.any(dim=1) & ~(excess.amax(dim=1) > 0)
            drop = flipped_s[row_of, slot_of]
            failed = (~ok).nonzero().squeeze(1)
            # the worst few violators of each failed sample join its support (an active-set step)
            worst_excess, join_atoms = torch.topk(excess[failed], min(self.max_new_atoms, n_atoms), dim=1)
            join_signs = torch.sign(correlation[failed].gather(1, join_atoms)).to(torch.int8)
        return polished, ok, (row_of[drop], atom_of[drop]), (failed, join_atoms, worst_excess > 0, join_signs)


def _working_set_guess(gram, analysis_of_x, lam_full, mu, nonneg, size, sweeps):
    r"""A cheap support guess: coordinate descent on each sample's ``size`` most correlated atoms.

    Solves :math:`\min_{z_W} \tfrac12 z_W^\top G_{WW} z_W - (D^\top x)_W^\top z_W + \sum_{i\in W}\lambda_i|z_i|
    + \tfrac{\mu}{2}\|z_W\|^2` approximately (``sweeps`` passes), where :math:`W` holds the ``size``
    largest :math:`|d_i^\top x|` (signed for ``nonneg``) and :math:`G = D^\top D`. Only a guess: the caller
    keeps a code only if the support polish verifies it against the full optimality conditions.
    Returns the guess as a full ``(batch, n_atoms)`` code.
    """
    n_atoms = analysis_of_x.shape[1]
    score = analysis_of_x if nonneg else analysis_of_x.abs()
    atoms = torch.topk(score, size, dim=1).indices
    # column j of every sample's reduced Gram matrix, contiguous: gram_cols[:, j] = G_{W, w_j}
    gram_cols = torch.take(gram, atoms.unsqueeze(1) * n_atoms + atoms.unsqueeze(2))
    diagonal = gram_cols.diagonal(dim1=1, dim2=2) + mu
    # a zero atom has zero correlation, so its coordinate stays 0; the clamp only avoids 0/0
    inverse_diagonal = 1 / diagonal.clamp_min(torch.finfo(diagonal.dtype).tiny)
    lam = torch.gather(lam_full, 1, atoms)
    residual = torch.gather(analysis_of_x, 1, atoms)  # (Dᵀx)_W − G_WW z_W, kept up to date
    z = torch.zeros_like(residual)
    for _ in range(sweeps):
        for j in range(size):
            old = z[:, j]
            u = residual[:, j] + (diagonal[:, j] - mu) * old
            new = elastic_net_prox(u, lam[:, j], 0, nonneg, check=False) * inverse_diagonal[:, j]
            residual.addcmul_(gram_cols[:, j], (old - new).unsqueeze(1))
            z[:, j] = new
    return torch.zeros_like(analysis_of_x).scatter(1, atoms, z)


# the working-set pass (measured on benchmarks/bench_solvers.py problem (a)): a guess from the
# 8 most correlated atoms, 3 coordinate-descent sweeps, then up to 10 active-set rounds, abandoned
# after a round that finishes fewer than 1/256 of its samples (non-sparse solutions: the rounds grow
# a support by 2 atoms each and finish nobody; one round costs about as much as 2-3 FISTA iterations)
WORKING_SET_SIZE, WORKING_SET_SWEEPS, WORKING_SET_ROUNDS, WORKING_SET_GIVE_UP = 8, 3, 10, 1 / 256


def _working_set_pass(dictionary, x, lam_t, mu, nonneg, tol):
    """Samples solved by a support guess plus verified polish rounds: (their rows, codes, other rows, guess)."""
    analysis_of_x = dictionary.analyze(x)
    polisher = _SupportPolish(dictionary, x, analysis_of_x, lam_t, mu, nonneg, tol)
    with torch.no_grad():
        size = min(WORKING_SET_SIZE, analysis_of_x.shape[1])
        guess = _working_set_guess(polisher.gram.detach(), analysis_of_x.detach(), polisher.lam_full.detach(),
                                   mu, nonneg, size, WORKING_SET_SWEEPS)
    everyone = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    rows = torch.arange(x.shape[0], device=x.device)
    found, codes = polisher(rows, guess, everyone, rounds=WORKING_SET_ROUNDS, give_up_below=WORKING_SET_GIVE_UP)
    everyone[found] = False
    return found, codes, everyone.nonzero().squeeze(1), guess


class _RestartStep:
    """The step map :math:`T(y) = \\operatorname{prox}\\big(y + \\eta D^\\top x - \\eta D^\\top D y\\big)` of a phase.

    Holds the per-sample constants (:math:`\\eta D^\\top x` and the threshold), which the monitor shrinks with
    the batch. Dense dictionaries without autograd write into reused buffers (fresh large tensors cost page
    faults): ``out`` from the loop, and the two intermediates here.
    """

    def __init__(self, dictionary, analysis_of_x, lam_t, mu, nonneg, step, signal_size, inplace):
        self.dictionary, self.nonneg, self.step, self.signal_size = dictionary, nonneg, step, signal_size
        self.dense, self.inplace = isinstance(dictionary, LinearDictionary), inplace
        self.scaled_analysis = step * analysis_of_x  # the constant part of the gradient step, computed once
        # a scalar λ becomes a number once (no device sync per iteration; the prox's one-pass path), unless a
        # gradient must reach it
        as_number = lam_t.ndim == 0 and not lam_t.requires_grad
        self.threshold = float(lam_t) * step if as_number else lam_t * step
        self.shrink = mu * step
        self.buffers = None

    def keep(self, mask, rows, batch, code_ndim, lam_t):
        """Follow the batch after samples left it (``mask`` over the old batch; ``rows``: the remaining samples)."""
        self.scaled_analysis = self.scaled_analysis[mask]
        if isinstance(self.threshold, torch.Tensor):
            self.threshold = _rows(lam_t, rows, batch, code_ndim) * self.step

    def __call__(self, y, k, out):
        weight = self.dictionary.weight
        if self.dense:  # y + ηDᵀx − η Dᵀ(D y) as one matrix product added in place
            if out is not None and (self.buffers is None or self.buffers[0].shape[0] != y.shape[0]):
                self.buffers = (torch.empty(y.shape[0], weight.shape[0], dtype=y.dtype, device=y.device),
                                torch.empty_like(y))
            projected, u = self.buffers if out is not None else (None, None)
            projected = torch.mm(y, weight.T, out=projected)
            u = torch.add(y, self.scaled_analysis, out=u).addmm_(projected, weight, alpha=-self.step)
        else:
            u = y + self.scaled_analysis - self.step * self.dictionary.analyze(
                self.dictionary.synthesize(y, output_size=self.signal_size))
        return elastic_net_prox(u, self.threshold, self.shrink, self.nonneg, out=out, check=False)


def _run(dictionary, analysis_of_x, z, lam_t, mu, nonneg, step, signal_size, max_iter, tol, check_every,
         polisher, batch):
    """One precision phase. Returns (rows, codes, polished?) of finished samples and the iterations run."""
    needs_grad = torch.is_grad_enabled() and any(
        t_.requires_grad for t_ in (analysis_of_x, z, lam_t, dictionary.weight))
    step_map = _RestartStep(dictionary, analysis_of_x, lam_t, mu, nonneg, step, signal_size,
                            inplace=isinstance(dictionary, LinearDictionary) and not needs_grad)
    state = {"rows": torch.arange(z.shape[0], device=z.device), "prev_support": None}
    finished = []

    def monitor(k, z_next, z_prev, delta):
        rows = state["rows"]
        with torch.no_grad():
            change = _per_sample(delta).norm(dim=1)
            done = change <= tol * _per_sample(z_next).norm(dim=1)
            accepted = torch.zeros_like(done)
            support = _per_sample(z_next) != 0
        if polisher is not None and state["prev_support"] is not None:
            # stable supports are worth an exact solve; so are samples about to stop on tol
            candidates = (support == state["prev_support"]).all(dim=1) | done
            if candidates.any():
                found, codes = polisher(rows, _per_sample(z_next), candidates)  # outside no_grad: differentiable
                if found.numel():
                    positions = candidates.nonzero().squeeze(1)[found]
                    accepted[positions] = True
                    done[positions] = False
                    finished.append((rows[positions], codes.reshape(-1, *z_next.shape[1:]), True))
        keep = ~(done | accepted)
        if done.any():
            finished.append((rows[done], z_next[done], False))
        if not keep.all():
            state["rows"] = rows[keep]
            step_map.keep(keep, state["rows"], batch, z_next.ndim, lam_t)
        state["prev_support"] = support[keep]
        return keep

    z, k = proximal_gradient(step_map, z, max_iter, momentum="restart", inplace=step_map.inplace, monitor=monitor,
                             check_every=check_every)
    leftover = (state["rows"], z) if state["rows"].numel() else None
    return finished, leftover, k


def restarted_fista(dictionary, x, lam_t, mu, nonneg, step, signal_size, z0, max_iter, tol, check_every=5,
                    polish=False, iterate_dtype=None, working_set=True):
    r"""Restarted FISTA (O'Donoghue and Candès, 2015) with batch shrinking and optional support polish.

    Minimizes, per sample, :math:`\tfrac12\|x - Dz\|^2 + \sum_i\lambda_i|z_i| + \tfrac{\mu}{2}\|z\|^2`
    (:math:`z \ge 0` if ``nonneg``), chapter 5 ``eq-fista`` with restarts. Returns
    ``(z, n_iter, converged)``; ``converged`` means every sample was polished or met ``tol``.

    With ``polish`` and a zero ``z0`` (and ``working_set``), a working-set pass comes first: each
    sample's support is guessed by :func:`_working_set_guess` and refined by active-set rounds of the
    support polish; samples it verifies are done (``n_iter`` counts FISTA iterations only, so 0 if
    all are), the others run the FISTA iterations above, warm-started from their guess.
    """
    batch = x.shape[0]
    if polish and working_set and isinstance(dictionary, LinearDictionary) and not bool(z0.any()):
        done_rows, done_codes, rest, guess = _working_set_pass(dictionary, x, lam_t, mu, nonneg, tol)
        if done_rows.numel():
            if rest.numel() == 0:
                return done_codes[torch.argsort(done_rows)], 0, True
            z_rest, n_iter, converged = restarted_fista(
                dictionary, x[rest], _rows(lam_t, rest, batch, z0.ndim), mu, nonneg, step, signal_size,
                guess[rest], max_iter, tol, check_every, polish, iterate_dtype, working_set=False)
            all_rows = torch.cat([done_rows, rest])
            return torch.cat([done_codes, z_rest])[torch.argsort(all_rows)], n_iter, converged
    work_dict, work_x = dictionary, x
    low_precision = iterate_dtype is not None and iterate_dtype != x.dtype
    if low_precision:
        work_dict = type(dictionary).__new__(type(dictionary))
        work_dict.__dict__.update(dictionary.__dict__)
        work_dict.weight = dictionary.weight.to(iterate_dtype)
        work_dict.__dict__.pop("_lipschitz_cache", None)
        work_x = x.to(iterate_dtype)
    analysis_of_x = dictionary.analyze(x)
    polisher = None
    if polish:
        polisher = _SupportPolish(dictionary, x, analysis_of_x, lam_t, mu, nonneg, tol)
    z = z0.to(work_x.dtype)
    lam_work = lam_t.to(work_x.dtype)
    # a low-precision phase only identifies supports: its tolerance is what its precision can resolve
    phase_tol = max(tol, 10 * torch.finfo(work_x.dtype).eps) if low_precision else tol
    finished, leftover, n_iter = _run(work_dict, work_dict.analyze(work_x), z, lam_work, mu, nonneg, step,
                                      signal_size, max_iter, phase_tol, check_every, polisher, batch)
    converged = leftover is None
    if low_precision:
        # samples not polished in low precision continue in the problem's precision
        pending = [(r, zz) for r, zz, was_polished in finished if not was_polished]
        finished = [f for f in finished if f[2]]
        if leftover is not None:
            pending.append(leftover)
        if pending:
            rows = torch.cat([r for r, _ in pending])
            codes = torch.cat([zz for _, zz in pending]).to(x.dtype)
            order = torch.argsort(rows)
            rows, codes = rows[order], codes[order]
            lam_rows = _rows(lam_t, rows, batch, z.ndim)
            sub_x = x[rows]
            sub_polisher = None
            if polish:
                sub_polisher = _SupportPolish(dictionary, sub_x, analysis_of_x[rows], lam_rows, mu, nonneg, tol)
            more, leftover, extra = _run(dictionary, analysis_of_x[rows], codes, lam_rows, mu, nonneg, step,
                                         signal_size, max(max_iter - n_iter, 1), tol, check_every, sub_polisher,
                                         rows.numel())
            finished += [(rows[r], zz, p) for r, zz, p in more]
            if leftover is not None:
                leftover = (rows[leftover[0]], leftover[1])
            n_iter += extra
            converged = leftover is None
    if leftover is not None:
        finished.append((leftover[0], leftover[1].to(x.dtype), False))
    all_rows = torch.cat([r for r, _, _ in finished])
    all_codes = torch.cat([zz.to(x.dtype) for _, zz, _ in finished])
    # undo the shuffling of the batch (a differentiable gather)
    return all_codes[torch.argsort(all_rows)], n_iter, converged
