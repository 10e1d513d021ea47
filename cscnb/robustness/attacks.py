r"""Adversarial perturbations: FGSM and projected gradient ascent (PGD) in the ℓ∞ and ℓ2 balls (chapter 13).

Both attacks (approximately) solve, per sample, the worst-case problem

.. math:: \max_{\|\delta\| \le \varepsilon,\ x + \delta \in [a, b]} \ \ell\big(f(x + \delta), y\big),

FGSM :cite:p:`goodfellow2015explaining` by one step from :math:`\delta = 0` along the steepest-ascent direction of the
norm (``eq-ch13-fgsm``), PGD :cite:p:`madry2018towards` by repeated steps each followed by the projection onto the
ball and the box (``eq-ch13-pgd``). The steepest-ascent direction of a gradient :math:`g` in the unit ball is
:math:`\operatorname{sign}(g)` for ℓ∞ and :math:`g/\|g\|_2` for ℓ2 (Hölder; chapter 13, ``thm-ch13-worst-case``).

The model is evaluated as given: put it in ``eval()`` mode first if it has batch statistics, so that every sample's
perturbation depends only on that sample. Gradients are taken with respect to the input only (the model's parameter
gradients are not touched). The default loss is the cross-entropy summed over the batch.
"""
from __future__ import annotations

from numbers import Real

import torch
import torch.nn.functional as F

from ..core.validation import check_choice, nonneg_number, positive_int

__all__ = ["fgsm", "pgd", "steepest_ascent_direction", "project_to_ball"]

_NORMS = ("linf", "l2")


def _check_norm(norm) -> str:
    return check_choice(norm, "norm", _NORMS)


def _check_inputs(model, x, y) -> None:
    if not callable(model):
        raise TypeError(f"model must be callable (an nn.Module or a function), got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
        raise TypeError("x must be a floating-point torch.Tensor")
    if x.ndim < 1:
        raise ValueError("x must have a batch dimension")
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x and y must have the same number of samples, got {x.shape[0]} and {y.shape[0]}")


def _check_bounds(bounds):
    if bounds is None:
        return None
    if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2):
        raise TypeError(f"bounds must be None or a pair (low, high), got {bounds!r}")
    low, high = bounds
    if isinstance(low, Real) and isinstance(high, Real) and low > high:
        raise ValueError(f"bounds must satisfy low <= high, got {bounds!r}")
    return low, high


def _per_sample_l2(v: torch.Tensor) -> torch.Tensor:
    """‖v_n‖₂ of every sample, shaped to broadcast against v."""
    return v.flatten(1).norm(dim=1).reshape(-1, *([1] * (v.ndim - 1)))


def steepest_ascent_direction(gradient: torch.Tensor, norm: str = "linf") -> torch.Tensor:
    r"""Per sample, :math:`\argmax_{\|u\| \le 1} g^\top u`: :math:`\operatorname{sign}(g)` (ℓ∞) or
    :math:`g/\|g\|_2` (ℓ2).

    A zero gradient gives the zero direction. Chapter 13, ``thm-ch13-worst-case``.
    """
    if _check_norm(norm) == "linf":
        return gradient.sign()
    # clamp_min: a zero gradient has no direction and stays zero instead of 0/0
    return gradient / _per_sample_l2(gradient).clamp_min(torch.finfo(gradient.dtype).tiny)


def project_to_ball(delta: torch.Tensor, eps: float, norm: str = "linf") -> torch.Tensor:
    r"""Euclidean projection of every sample of ``delta`` onto :math:`\{\|\delta\| \le \varepsilon\}` (ℓ∞ or ℓ2).

    ℓ∞: clamp every entry to :math:`[-\varepsilon, \varepsilon]`; ℓ2: rescale by
    :math:`\min(1, \varepsilon/\|\delta\|_2)`. The projection step of PGD, chapter 13, ``eq-ch13-pgd``.
    """
    eps = nonneg_number(eps, "eps")
    if _check_norm(norm) == "linf":
        return delta.clamp(-eps, eps)
    scale = (eps / _per_sample_l2(delta).clamp_min(torch.finfo(delta.dtype).tiny)).clamp(max=1.0)
    return delta * scale


def _clip_to_box(x_adv: torch.Tensor, bounds) -> torch.Tensor:
    if bounds is None:
        return x_adv
    low, high = bounds
    return torch.clamp(x_adv, min=low, max=high)


def _input_gradient(model, x_adv: torch.Tensor, y: torch.Tensor, loss_fn) -> torch.Tensor:
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(model(x_adv), y)
        if loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar (sum over the batch), got shape {tuple(loss.shape)}")
        (gradient,) = torch.autograd.grad(loss, x_adv)
    return gradient


def _default_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # summed, not averaged: every sample's gradient is then independent of the batch size
    return F.cross_entropy(logits, y, reduction="sum")


def fgsm(model, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str = "linf", loss_fn=None,
         bounds=None) -> torch.Tensor:
    r"""Fast gradient (sign) method: :math:`x + \varepsilon\,u(\nabla_x \ell(f(x), y))`, clipped to ``bounds``.

    :math:`u` is the steepest-ascent direction of the norm (:func:`steepest_ascent_direction`): for ℓ∞ this is
    FGSM :cite:p:`goodfellow2015explaining`, :math:`x + \varepsilon\operatorname{sign}(\nabla_x\ell)`; for ℓ2 the
    normalized gradient step. It maximizes the first-order model of the loss over the ball, so it is the exact
    worst case over the ball for a loss that is linear in :math:`x` (chapter 13, ``eq-ch13-fgsm``,
    ``thm-ch13-worst-case``); with ``bounds`` it is still exact for ℓ∞, where ball and box are both
    coordinatewise, while for ℓ2 the clipped step is feasible but not in general the maximizer.
    ``bounds = (low, high)`` (numbers or tensors broadcastable to ``x``) is the valid input box.
    ``loss_fn(output, y)`` must return a scalar; the default is the summed cross-entropy. Returns a detached tensor.
    """
    _check_inputs(model, x, y)
    eps = nonneg_number(eps, "eps")
    norm = _check_norm(norm)
    bounds = _check_bounds(bounds)
    loss_fn = _default_loss if loss_fn is None else loss_fn
    gradient = _input_gradient(model, x, y, loss_fn)
    return _clip_to_box(x.detach() + eps * steepest_ascent_direction(gradient, norm), bounds).detach()


def _random_start(x: torch.Tensor, eps: float, norm: str, generator) -> torch.Tensor:
    if norm == "linf":
        return (2 * torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) - 1) * eps
    # uniform in the ℓ2 ball: uniform direction, radius eps·U^(1/d)
    direction = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    direction = direction / _per_sample_l2(direction).clamp_min(torch.finfo(x.dtype).tiny)
    dimension = x[0].numel()
    radius = eps * torch.rand(x.shape[0], generator=generator, dtype=x.dtype, device=x.device) ** (1.0 / dimension)
    return direction * radius.reshape(-1, *([1] * (x.ndim - 1)))


def pgd(model, x: torch.Tensor, y: torch.Tensor, eps: float, *, step_size: float, n_steps: int, norm: str = "linf",
        random_start: bool = False, generator=None, loss_fn=None, bounds=None) -> torch.Tensor:
    r"""Projected gradient ascent on the loss over the ``norm`` ball of radius ``eps`` (and the box ``bounds``).

    .. math:: x_{k+1} = \Pi_{\mathcal B_\varepsilon(x) \cap [a, b]}\big(x_k + \alpha\,u(\nabla_x \ell(f(x_k), y))\big),

    :math:`u` the steepest-ascent direction of the norm, :math:`\alpha` = ``step_size``, ``n_steps`` steps, from
    :math:`x_0 = x` or, with ``random_start``, from a uniform draw in the ball (``generator`` on ``x.device``)
    :cite:p:`madry2018towards`. The projection onto the intersection is computed as ball projection then box clip,
    which is exact for ℓ∞ (both are coordinatewise) and feasible for ℓ2. Chapter 13, ``eq-ch13-pgd``; on a
    linear model it reaches the closed-form worst case of ``thm-ch13-worst-case``. Returns a detached tensor.
    """
    _check_inputs(model, x, y)
    eps = nonneg_number(eps, "eps")
    step_size = nonneg_number(step_size, "step_size")
    n_steps = positive_int(n_steps, "n_steps")
    norm = _check_norm(norm)
    bounds = _check_bounds(bounds)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    loss_fn = _default_loss if loss_fn is None else loss_fn
    x = x.detach()
    delta = _random_start(x, eps, norm, generator) if random_start else torch.zeros_like(x)
    x_adv = _clip_to_box(x + delta, bounds)
    for _ in range(int(n_steps)):
        gradient = _input_gradient(model, x_adv, y, loss_fn)
        delta = project_to_ball(x_adv + step_size * steepest_ascent_direction(gradient, norm) - x, eps, norm)
        x_adv = _clip_to_box(x + delta, bounds)
    return x_adv.detach()
