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
  An accepted polish is the minimizer up to rounding, whatever precision found the support, so
  the identification iterations may run in a cheaper ``iterate_dtype`` (e.g. float32).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .dictionary import LinearDictionary

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
        self.mu, self.nonneg, self.tol = mu, nonneg, tol
        # a support larger than n_features cannot have a positive-definite D_Sᵀ D_S (unless μ > 0)
        self.max_support = self.weight.shape[0] if mu == 0 else self.weight.shape[1]
        self.rounds = 3

    def __call__(self, rows: torch.Tensor, z_work: torch.Tensor, candidates: torch.Tensor):
        """Optimal codes for some of ``rows[candidates]``: (their positions among the candidates, codes).

        Starts from the iterate's support and signs; a failed check drops the atoms whose sign
        flipped and adds the atoms that violate the off-support condition, for a few rounds.
        These updates only steer which supports are tried: a code is returned only if it passes
        the full optimality check.
        """
        cand_rows = rows[candidates]
        z = z_work[candidates].to(self.x.dtype)
        support, signs = z != 0, torch.sign(z)
        pending = torch.arange(z.shape[0], device=z.device)
        found_idx, found_codes = [], []
        for round_ in range(self.rounds):
            sizes = support.sum(dim=1)
            usable = (sizes > 0) & (sizes <= self.max_support)
            pending, support, signs = pending[usable], support[usable], signs[usable]
            if pending.numel() == 0:
                break
            sample = cand_rows[pending]
            polished, correlation, ok, sign_flipped, violators = self._solve_and_check(sample, support, signs)
            found_idx.append(pending[ok])
            found_codes.append(polished[ok])
            failed = ~ok
            pending, support, signs = pending[failed], support[failed], signs[failed]
            sign_flipped, violators, correlation = sign_flipped[failed], violators[failed], correlation[failed]
            support = (support & ~sign_flipped) | violators
            signs = torch.where(violators, torch.sign(correlation), signs)
        if not found_idx:
            return pending[:0], z[:0]
        return torch.cat(found_idx), torch.cat(found_codes)

    def _solve_and_check(self, sample, support, signs):
        k = int(support.sum(dim=1).max())
        # the support's atom indices first (stable sort keeps them ordered), padded to k
        order = torch.argsort(support.to(torch.int8), dim=1, descending=True, stable=True)[:, :k]
        valid = torch.gather(support, 1, order).to(self.x.dtype)
        signs_s = torch.gather(signs, 1, order)
        lam = self.lam_full[sample]
        gram_s = self.gram[order.unsqueeze(2), order.unsqueeze(1)]
        # padding rows/columns become identity so that every small system stays solvable
        gram_s = gram_s * valid.unsqueeze(2) * valid.unsqueeze(1) + torch.diag_embed(1 - valid + self.mu * valid)
        rhs = (torch.gather(self.analysis_of_x[sample], 1, order) - torch.gather(lam, 1, order) * signs_s) * valid
        chol, info = torch.linalg.cholesky_ex(gram_s)
        z_s = torch.cholesky_solve(rhs.unsqueeze(2), chol).squeeze(2) * valid
        polished = torch.zeros(support.shape, dtype=z_s.dtype, device=z_s.device).scatter(1, order, z_s)
        with torch.no_grad():
            sign_flipped = support & (torch.sign(polished) != signs)
            correlation = (self.x[sample] - polished @ self.weight.T) @ self.weight - self.mu * polished
            excess = (correlation - lam) if self.nonneg else (correlation.abs() - lam)
            # allowed slack: tol relative to λ (and to the correlation scale when λ_i = 0)
            slack = self.tol * torch.maximum(lam, correlation.abs().amax(dim=1, keepdim=True).clamp_min(1e-30))
            violators = ~support & (excess > slack)
            ok = (info == 0) & ~sign_flipped.any(dim=1) & ~violators.any(dim=1)
        return polished, correlation, ok, sign_flipped, violators


def _dense_step_inplace(weight, y, z, scaled_analysis, step, thr, nonneg, scalar_lam, mu, projected, u, out):
    """z_next = prox(y + step·Dᵀx − step·DᵀD y) written into ``out``; returns (z_next, z_next − z in ``u``)."""
    torch.mm(y, weight.T, out=projected)
    torch.add(y, scaled_analysis, out=u)
    u.addmm_(projected, weight, alpha=-step)
    if nonneg:
        torch.sub(u, thr, out=out).relu_()
    elif scalar_lam:
        torch.ops.aten.softshrink.out(u, thr, out=out)
    else:
        torch.sub(u, torch.clamp(u, -thr, thr), out=out)
    if mu:
        out.div_(1 + mu * step)
    torch.sub(out, z, out=u)
    return out, u


def _run(dictionary, analysis_of_x, z, lam_t, mu, nonneg, step, signal_size, max_iter, tol, check_every,
         polisher, batch):
    """One precision phase. Returns (rows, codes, polished?) of finished samples and the iterations run."""
    rows = torch.arange(z.shape[0], device=z.device)
    t = torch.ones((z.shape[0],) + (1,) * (z.ndim - 1), dtype=z.dtype, device=z.device)
    y, prev_support = z, None
    dense = isinstance(dictionary, LinearDictionary)
    scalar_lam = lam_t.ndim == 0
    finished = []
    k = 0
    scaled_analysis = step * analysis_of_x  # the constant part of the gradient step, computed once
    needs_grad = torch.is_grad_enabled() and any(
        t_.requires_grad for t_ in (analysis_of_x, z, lam_t, dictionary.weight))
    # without autograd, the dense step writes into reused buffers: large fresh tensors cost page faults
    inplace = dense and not needs_grad
    if inplace:
        z = z.clone()  # never write into the caller's z0
        y, spare = z.clone(), None
    for k in range(1, max_iter + 1):
        lam_rows = _rows(lam_t, rows, batch, z.ndim)
        thr = float(lam_t) * step if scalar_lam else lam_rows * step
        if inplace:
            if spare is None or spare.shape != z.shape:
                spare, u = torch.empty_like(z), torch.empty_like(z)
                projected = torch.empty(z.shape[0], dictionary.weight.shape[0], dtype=z.dtype, device=z.device)
            z_next, delta = _dense_step_inplace(dictionary.weight, y, z, scaled_analysis, step, thr, nonneg,
                                                scalar_lam, mu, projected, u, spare)
            # gradient restart test (y − z_next)ᵀ(z_next − z) > 0; y is overwritten just below anyway
            gradient_map = y.sub_(z_next)
            restart = torch.bmm(gradient_map.unsqueeze(1), delta.unsqueeze(2)).reshape(t.shape) > 0
            t_next = (1 + torch.sqrt(1 + 4 * t * t)) / 2
            beta = torch.where(restart, torch.zeros_like(t), (t - 1) / t_next)
            t = torch.where(restart, torch.ones_like(t), t_next)
            torch.addcmul(z_next, beta, delta, out=y)
            spare, z = z, z_next
        else:
            if dense:  # y − step·(Dᵀ D y − Dᵀx) as one fused matrix product
                u = torch.addmm(y + scaled_analysis, y @ dictionary.weight.T, dictionary.weight, alpha=-step)
            else:
                u = y + scaled_analysis - step * dictionary.analyze(dictionary.synthesize(y, output_size=signal_size))
            if nonneg:
                z_next = torch.relu(u - thr)
            elif scalar_lam:
                z_next = F.softshrink(u, thr) if thr > 0 else u
            else:
                z_next = u - torch.clamp(u, -thr, thr)
            if mu:
                z_next = z_next / (1 + mu * step)
            delta = z_next - z
            with torch.no_grad():
                restart = torch.linalg.vecdot(_per_sample(y - z_next), _per_sample(delta)).reshape(t.shape) > 0
                t_next = (1 + torch.sqrt(1 + 4 * t * t)) / 2
                beta = torch.where(restart, torch.zeros_like(t), (t - 1) / t_next)
                t = torch.where(restart, torch.ones_like(t), t_next)
            y = torch.addcmul(z_next, beta, delta)
            z = z_next
        if k % check_every and k != max_iter:
            continue
        with torch.no_grad():
            change = _per_sample(delta).norm(dim=1)
            done = change <= tol * _per_sample(z).norm(dim=1)
            accepted = torch.zeros_like(done)
            support = _per_sample(z) != 0
        if polisher is not None and prev_support is not None:
            # stable supports are worth an exact solve; so are samples about to stop on tol
            candidates = (support == prev_support).all(dim=1) | done
            if candidates.any():
                found, codes = polisher(rows, _per_sample(z), candidates)  # outside no_grad: differentiable
                if found.numel():
                    positions = candidates.nonzero().squeeze(1)[found]
                    accepted[positions] = True
                    done[positions] = False
                    finished.append((rows[positions], codes.reshape(-1, *z.shape[1:]), True))
        keep = ~(done | accepted)
        if done.any():
            finished.append((rows[done], z[done], False))
        if not keep.any():
            rows = rows[keep]
            break
        if not keep.all():
            rows, z, y, t = rows[keep], z[keep], y[keep], t[keep]
            scaled_analysis = scaled_analysis[keep]
        prev_support = support[keep]
    leftover = (rows, z) if rows.numel() else None
    return finished, leftover, k


def restarted_fista(dictionary, x, lam_t, mu, nonneg, step, signal_size, z0, max_iter, tol, check_every=5,
                    polish=False, iterate_dtype=None):
    r"""Restarted FISTA (O'Donoghue and Candès, 2015) with batch shrinking and optional support polish.

    Minimizes, per sample, :math:`\tfrac12\|x - Dz\|^2 + \sum_i\lambda_i|z_i| + \tfrac{\mu}{2}\|z\|^2`
    (:math:`z \ge 0` if ``nonneg``), chapter 5 ``eq-fista`` with restarts. Returns
    ``(z, n_iter, converged)``; ``converged`` means every sample was polished or met ``tol``.
    """
    batch = x.shape[0]
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
