r"""The one proximal-gradient loop of the package: pluggable momentum, step map and prox.

Every iterative solver and every unrolled layer of ``cscnb`` minimizes, per sample,

.. math:: \min_z\ f(z) + g(z), \qquad f \text{ smooth with } L\text{-Lipschitz gradient},\ g \text{ with a cheap prox},

by the forward-backward iteration with momentum (chapter 5, ``eq-ista`` and ``eq-fista``; chapter 12,
``eq-ch12-fista``)

.. math:: z_{k+1} = T_k(y_k) = \operatorname{prox}_{\eta_k g}\big(y_k - \eta_k \nabla f(y_k)\big), \qquad
          y_{k+1} = z_{k+1} + \beta_k\,(z_{k+1} - z_k), \qquad y_0 = z_0 .

Chapter 5 indexes as Beck and Teboulle (2009) do, :math:`z_k = T(y_k)` with :math:`y_1 = z_0`, :math:`t_1 = 1`;
here every index of :math:`y` and :math:`t` is one lower (:math:`y_0 = z_0`, :math:`t_0 = 1`): the same iterates
:math:`z_1, z_2, \dots`.

:func:`proximal_gradient` runs it. What differs between callers is plugged in:

* the **step map** :math:`T_k` (``step``): it carries the gradient, the step-size policy (a constant
  :math:`1/L` from :func:`cscnb.core.operator_norm.power_iteration`, the CSC layer's on-device
  :math:`c/\hat L`, a learned step per layer) and the prox (:mod:`cscnb.core.prox`);
* the **momentum** :math:`\beta_k` (``momentum``): ``"none"`` (ISTA: :math:`\beta = 0`), ``"fista"``
  (Beck and Teboulle, 2009: :func:`fista_momentum`, :math:`\beta_k = (t_k - 1)/t_{k+1}`, :math:`t_0 = 1`) or
  ``"restart"`` (O'Donoghue and Candès, 2015: FISTA per sample, reset to :math:`t = 1`, :math:`\beta = 0`
  whenever :func:`gradient_restart` finds the momentum pointing uphill);
* a **monitor** (``monitor``, every ``check_every`` iterations): convergence tests, histories, batch
  shrinking (it returns which samples keep iterating) and support polish;
* **carried images** (``image``): a linear image of the iterate (e.g. :math:`Dz` in the Fourier domain) that
  the step map returns with :math:`z_{k+1}`; the loop extrapolates it with the same :math:`\beta`, so the
  image of :math:`y` never has to be computed.

``inplace=True`` (no autograd) runs the same loop in reused buffers: ``step`` receives ``out`` to write
:math:`z_{k+1}` into, :math:`z_{k+1} - z_k` overwrites :math:`z_k`'s memory, and with ``"fista"`` momentum
:math:`y_{k+1}` overwrites :math:`z_k` (the caller's :math:`z_0` is never written).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..core.validation import check_choice, positive_int

__all__ = ["proximal_gradient", "forward_backward", "fista_step", "fista_steps", "fista_momentum", "gradient_restart",
           "extrapolate", "MOMENTA"]

MOMENTA = ("none", "fista", "restart")


def forward_backward(gradient: Callable, prox: Callable, step):
    r"""The forward-backward step map :math:`T_k(y) = \operatorname{prox}_{\eta_k g}\big(y - \eta_k\nabla f(y)\big)`.

    For :func:`proximal_gradient`. ``gradient``: :math:`y \mapsto \nabla f(y)`; ``prox``: ``(u, eta, out)``
    :math:`\mapsto \operatorname{prox}_{\eta g}(u)` (written into ``out`` when given; a member of
    :mod:`cscnb.core.prox`); ``step``: the step-size policy, a number or 0-d tensor :math:`\eta` or a
    callable :math:`k \mapsto \eta_k`. Chapter 5, ``eq-ista``.
    """
    def step_map(y, k, out=None):
        eta = step(k) if callable(step) else step
        return prox(y - eta * gradient(y), eta, out)
    return step_map


def fista_momentum(t):
    r"""The FISTA momentum sequence :math:`t_{k+1} = \big(1 + \sqrt{1 + 4t_k^2}\big)/2` (a number or a tensor).

    The positive root of :math:`t'^2 - t' = t^2` (chapter 5, ``eq-fista``; checked against SymPy in chapter 12).
    """
    sqrt = torch.sqrt if isinstance(t, torch.Tensor) else math.sqrt
    return (1 + sqrt(1 + 4 * t * t)) / 2


@torch.no_grad()
def gradient_restart(y: torch.Tensor, z_next: torch.Tensor, delta: torch.Tensor, out=None) -> torch.Tensor:
    r"""Per sample, whether the momentum points uphill: :math:`(y_k - z_{k+1})^\top(z_{k+1} - z_k) > 0`.

    The gradient restart test of O'Donoghue and Candès (2015); ``delta`` is :math:`z_{k+1} - z_k`. Returns a
    bool tensor of shape ``(B,)``. ``out`` (a buffer, may be ``y`` itself) receives :math:`y_k - z_{k+1}`.
    """
    gradient_map = torch.sub(y, z_next, out=out)
    if y.shape[0] == 1:  # one long sample (e.g. an image in the Fourier domain): a BLAS dot, no temporary
        return (torch.dot(gradient_map.reshape(-1), delta.reshape(-1)) > 0).reshape(1)
    return torch.linalg.vecdot(gradient_map.reshape(y.shape[0], -1), delta.reshape(y.shape[0], -1)) > 0


def extrapolate(z_next: torch.Tensor, z: torch.Tensor | None, beta, delta: torch.Tensor | None = None, out=None):
    r"""The momentum step :math:`y = z_{k+1} + \beta\,(z_{k+1} - z_k)`.

    With ``delta`` (:math:`z_{k+1} - z_k`, already computed) one multiply-add, ``beta`` a number or a tensor
    that broadcasts per sample; without, one interpolation ``lerp(z, z_next, 1 + β)`` (a number ``beta``),
    written into ``z`` when ``out is z``.
    """
    if delta is not None:
        if isinstance(beta, torch.Tensor):
            return torch.addcmul(z_next, beta, delta, out=out)
        return torch.add(z_next, delta, alpha=beta, out=out)
    if out is not None and out is z:
        return z.lerp_(z_next, 1 + beta)
    return torch.lerp(z, z_next, 1 + beta)


def fista_step(prox_grad, z, y, t: float, *, overwrite: bool = False):
    r"""One FISTA step (Beck and Teboulle, 2009): the step of :func:`proximal_gradient` with ``"fista"`` momentum.

    .. math:: z_{k+1} = \operatorname{prox}_{\eta g}\big(y_k - \eta\nabla f(y_k)\big),\quad
              t_{k+1} = \tfrac{1 + \sqrt{1 + 4t_k^2}}{2},\quad
              y_{k+1} = z_{k+1} + \tfrac{t_k - 1}{t_{k+1}}(z_{k+1} - z_k),

    where ``prox_grad(y)`` computes the first formula. Returns ``(z_next, y_next, t_next)``.
    The momentum is one pass, ``lerp(z, z_next, 1 + β)`` = :math:`z_{k+1} + \beta(z_{k+1} - z_k)`;
    with :math:`t_k = 1` (:math:`\beta = 0`) :math:`y_{k+1}` *is* :math:`z_{k+1}`. ``overwrite=True``
    writes :math:`y_{k+1}` into ``z``'s memory (no autograd; the caller must not need ``z`` again).
    Implements chapter 5, ``eq-fista``, in the form of chapter 12, ``eq-ch12-fista``.
    """
    z_next = prox_grad(y)
    t_next = fista_momentum(t)
    beta = (t - 1) / t_next
    if beta == 0:
        return z_next, z_next, t_next
    return z_next, extrapolate(z_next, z, beta, out=z if overwrite else None), t_next


def fista_steps(prox_grad, z0: torch.Tensor, n_steps: int, *, first: torch.Tensor | None = None,
                overwrite: bool = False) -> torch.Tensor:
    r"""``n_steps`` FISTA steps (:func:`fista_step`) from ``z0`` (:math:`y_0 = z_0`, :math:`t_0 = 1`): :math:`z_K`.

    The iterate after :math:`K` steps of the problem whose proximal-gradient map is ``prox_grad``
    (chapter 12, ``eq-ch12-fista``): :func:`proximal_gradient` with ``"fista"`` momentum. Plain autograd
    operations: differentiating the result is the *unrolled* gradient. ``first``: :math:`z_1 = T(z_0)` when
    the caller has it more cheaply (the CSC layer: :math:`T(0) = \operatorname{prox}(\eta A^\top x)`, no
    synthesis). ``overwrite``: reuse the iterates' memory for the momentum (no autograd; ``first`` is then
    scratch too). The last step's momentum is not computed (:math:`y_K` is never used).
    """
    if overwrite and torch.is_grad_enabled() and (z0.requires_grad or (first is not None and first.requires_grad)):
        raise ValueError("overwrite=True reuses the iterates' memory and cannot be differentiated; "
                         "run it under torch.no_grad()")

    def step(y, k, out):
        return first if k == 0 and first is not None else prox_grad(y)
    return proximal_gradient(step, z0, n_steps, momentum="fista", inplace=overwrite)[0]


def _view(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.reshape((like.shape[0],) + (1,) * (like.ndim - 1))


def proximal_gradient(step: Callable, z0: torch.Tensor, n_iter: int, *, momentum: str = "fista",
                      inplace: bool = False, image: torch.Tensor | None = None, monitor: Callable | None = None,
                      check_every: int = 1):
    r"""Run :math:`z_{k+1} = T_k(y_k)`, :math:`y_{k+1} = z_{k+1} + \beta_k(z_{k+1} - z_k)` from ``z0``.

    The package's one proximal-gradient loop (module docstring).

    ``step(y, k, out)`` returns :math:`z_{k+1} = T_k(y_k)` (``k`` from 0; ``out`` a buffer to write into, or
    None); with ``image`` (the carried image of ``z0``) it is called as ``step(y, k, out, image_of_y)`` and
    returns ``(z_next, image_of_z_next)``. ``monitor(k, z_next, z, delta)`` runs after iterations
    ``check_every``, ``2 check_every``, … and the last (``k`` from 1; ``delta`` = :math:`z_{k+1} - z_k` with
    ``"restart"`` momentum, else None; ``z`` is not meaningful in place) and returns None (go on), True
    (stop) or a bool tensor ``(B,)`` of the samples that go on (the others leave the batch; the monitor keeps
    its own per-sample state in step). Differentiable unless ``inplace``.

    Returns ``(z, k)``: the last iterate (of the samples still in the batch) and the iterations run.
    The momentum of the last iteration is never computed.
    """
    check_choice(momentum, "momentum", MOMENTA)
    if image is not None and momentum == "fista":
        raise ValueError("a carried image needs momentum 'restart' or 'none'")
    n_iter = positive_int(n_iter, "n_iter")
    check_every = positive_int(check_every, "check_every")
    restart = momentum == "restart"
    if inplace and torch.is_grad_enabled() and z0.requires_grad:
        raise ValueError("inplace=True reuses the iterates' memory and cannot be differentiated; "
                         "run it under torch.no_grad()")
    z, y, image_z, image_y = z0, z0, image, image
    t = _view(torch.ones(z0.shape[0], dtype=z0.dtype, device=z0.device), z0) if restart else 1.0
    if inplace and restart:
        z, y = z0.clone(), z0.clone()  # z's memory receives z_{k+1} - z_k, y's the next y: never the caller's
    spare = None
    k = 0
    for k in range(1, n_iter + 1):
        out = None
        if inplace and restart:
            spare = spare if spare is not None and spare.shape == z.shape else torch.empty_like(z)
            out = spare
        y_next = None
        if momentum == "fista" and k < n_iter:  # the last step's momentum would be wasted work
            z_next, y_next, t = fista_step(lambda v, k=k: step(v, k - 1, None), z, y, t,
                                           overwrite=inplace and z is not z0)
            image_next = None
        elif image is None:
            z_next, image_next = step(y, k - 1, out), None
        else:
            z_next, image_next = step(y, k - 1, out, image_y)
        delta = torch.sub(z_next, z, out=z if inplace else None) if restart else None
        if monitor is not None and (k % check_every == 0 or k == n_iter):
            verdict = monitor(k, z_next, z, delta)
            if verdict is True:
                return z_next, k
            if isinstance(verdict, torch.Tensor) and not bool(verdict.all()):
                if not bool(verdict.any()):
                    return z_next[verdict], k
                z_next, y, delta = z_next[verdict], y[verdict], None if delta is None else delta[verdict]
                y_next = None if y_next is None else y_next[verdict]
                if restart:
                    t = t[verdict]
                if image is not None:
                    image_next, image_z = image_next[verdict], image_z[verdict]
                spare = None
        if k == n_iter:
            break
        if momentum == "none":
            y = z_next
        elif restart:
            uphill = _view(gradient_restart(y, z_next, delta, out=y if inplace else None), t)
            t_next = fista_momentum(t)
            beta = torch.where(uphill, torch.zeros_like(t), (t - 1) / t_next)
            t = torch.where(uphill, torch.ones_like(t), t_next)
            y = extrapolate(z_next, None, beta, delta, out=y if inplace else None)
            if image is not None:
                image_y = extrapolate(image_next, None, _view(beta, image_next), image_next - image_z)
            spare = delta
        else:
            y = y_next
        z, image_z = z_next, image_next
    return z_next, k
