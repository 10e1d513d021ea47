r"""Unrolled sparse-coding solvers: LISTA, LISTA-CP and ALISTA with pluggable thresholding activations.

Each network runs ``n_layers`` steps of a thresholded iteration from :math:`z_0 = 0`, one layer per step,
for the dense model :math:`x = Dz^\star` (chapter 10, ``eq-ch10-model``); layer :math:`k` has its own
threshold :math:`\theta_k \ge 0` (stored as :math:`\theta_k = |\rho_k|`, as in :mod:`cscnb.nn.sparse_coding`):

* :class:`LISTA` (Gregor and LeCun, 2010), untied: :math:`z_{k+1} = \eta_{\theta_k}(W_e^k x + S^k z_k)`
  (chapter 10, ``eq-ch10-lista``);
* :class:`LISTACP` (Chen et al., 2018), coupled weights:
  :math:`z_{k+1} = \eta_{\theta_k}\big(z_k + W_k^\top (x - D z_k)\big)` (``eq-ch10-lista-cp``);
* :class:`ALISTA` (Liu et al., 2019), one analytic :math:`W`, learned step and threshold per layer:
  :math:`z_{k+1} = \eta_{\theta_k}\big(z_k - \gamma_k W^\top (D z_k - x)\big)` (``eq-ch10-alista``).

The activation :math:`\eta_\theta` is one of :data:`ACTIVATIONS` (chapter 10, ``eq-ch10-activations``):
soft threshold, ReLU with bias :math:`-\theta` (non-negative codes), hard threshold, or the firm threshold
(the proximal map of the minimax concave penalty, :func:`firm_threshold`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

import torch
import torch.nn as nn

from ..core.dictionary import LinearDictionary
from ..core.prox import hard_threshold, nonneg_soft_threshold, soft_threshold
from ..core.validation import check_choice, check_number, check_threshold, nonneg_number, positive_int, positive_number
from ..solvers.engine import proximal_gradient
from ..theory.bounds import generalized_coherence_weights

__all__ = ["ACTIVATIONS", "UnrolledConfig", "LISTA", "LISTACP", "ALISTA", "firm_threshold", "activation_fn",
           "theorem_thresholds", "iterate_errors", "empirical_rate",
           "hopfield_energy"]

ACTIVATIONS = ("soft", "relu", "hard", "firm")


def firm_threshold(u: torch.Tensor, t, gamma: float = 2.0) -> torch.Tensor:
    r"""Firm threshold: the proximal map of the minimax concave penalty (MCP) with :math:`\gamma > 1`.

    .. math:: \operatorname{firm}_{t,\gamma}(u) = \argmin_a \tfrac12(u - a)^2 + P_{t,\gamma}(a)
              = \begin{cases} 0 & |u| \le t \\ \operatorname{sign}(u)\frac{\gamma(|u| - t)}{\gamma - 1}
              & t < |u| \le \gamma t \\ u & |u| > \gamma t \end{cases}

    with :math:`P_{t,\gamma}(a) = t|a| - a^2/(2\gamma)` for :math:`|a| \le \gamma t` and :math:`\gamma t^2/2`
    beyond. It interpolates between the hard (:math:`\gamma \to 1`) and soft (:math:`\gamma \to \infty`)
    thresholds and is unbiased for large inputs. Implements chapter 10, equation ``eq-ch10-firm``.
    """
    check_threshold(t)
    _check_gamma(gamma)
    if isinstance(t, torch.Tensor):
        t = t.to(dtype=u.dtype, device=u.device)
    magnitude = u.abs()
    ramp = torch.sign(u) * (magnitude - t) * (gamma / (gamma - 1))
    return torch.where(magnitude <= t, torch.zeros_like(u), torch.where(magnitude <= gamma * t, ramp, u))


def _check_gamma(gamma) -> float:
    return check_number(gamma, "firm_gamma", minimum=1, open_minimum=True,
                        expected="a finite number > 1 (gamma = 1 is the hard threshold)")


def activation_fn(name: str, firm_gamma: float = 2.0):
    r"""The thresholding activation :math:`\eta_\theta` called ``name`` (one of :data:`ACTIVATIONS`).

    ``"soft"``: :math:`\operatorname{sign}(u)\max(|u| - \theta, 0)`; ``"relu"``: :math:`\max(u - \theta, 0)`;
    ``"hard"``: :math:`u\,\mathbb 1[|u| > \theta]`; ``"firm"``: :func:`firm_threshold`. Chapter 10,
    ``eq-ch10-activations``.
    """
    check_choice(name, "activation", ACTIVATIONS)
    if name == "firm":
        gamma = _check_gamma(firm_gamma)
        return lambda u, t: firm_threshold(u, t, gamma)
    return {"soft": soft_threshold, "relu": nonneg_soft_threshold, "hard": hard_threshold}[name]


@dataclass
class UnrolledConfig:
    r"""Depth :math:`K`, activation :math:`\eta` and initial thresholds :math:`\theta_0, \dots, \theta_{K-1}` of an
    unrolled solver (chapter 10, ``eq-ch10-lista-cp`` and ``eq-ch10-activations``)."""
    n_layers: int = 16
    activation: str = "soft"
    threshold: float | Sequence[float] | torch.Tensor = 0.1   # initial θ_k: one number or one per layer
    firm_gamma: float = 2.0                                  # γ of the firm threshold (activation="firm")

    def __post_init__(self):
        positive_int(self.n_layers, "n_layers")
        activation_fn(self.activation, self.firm_gamma)  # validates both

    def initial_thresholds(self) -> torch.Tensor:
        theta = self.threshold
        if isinstance(theta, bool) or not isinstance(theta, (Real, torch.Tensor, list, tuple)):
            raise TypeError(f"threshold must be a number or a sequence of n_layers numbers, got {type(theta).__name__}")
        theta = torch.as_tensor(theta, dtype=torch.float64).detach().clone()  # full precision; models cast it
        if theta.ndim == 0:
            theta = theta.expand(self.n_layers).clone()
        if theta.shape != (self.n_layers,):
            raise ValueError(f"threshold must be a number or have n_layers={self.n_layers} entries, "
                             f"got shape {tuple(theta.shape)}")
        if not torch.isfinite(theta).all() or (theta < 0).any():
            raise ValueError("threshold must be finite and non-negative in every layer")
        return theta


def _dictionary_weight(dictionary) -> torch.Tensor:
    if isinstance(dictionary, LinearDictionary):
        return dictionary.weight.detach().clone()
    raise TypeError(f"dictionary must be a cscnb.LinearDictionary, got {type(dictionary).__name__}")


class _UnrolledSolver(nn.Module):
    """Shared loop: z_0 = 0, z_{k+1} = η_{θ_k}(layer_input(k, x, z_k)); subclasses define layer_input.

    The loop is the package's proximal-gradient loop (:func:`cscnb.solvers.engine.proximal_gradient`) without
    momentum, one step map per layer.
    """

    def __init__(self, dictionary: LinearDictionary, config: UnrolledConfig):
        super().__init__()
        if not isinstance(config, UnrolledConfig):
            raise TypeError(f"config must be an UnrolledConfig, got {type(config).__name__}")
        self.config = config
        self.register_buffer("dictionary_weight", _dictionary_weight(dictionary))
        weight = self.dictionary_weight  # parameters take the dictionary's dtype and device
        self.threshold_param = nn.Parameter(config.initial_thresholds().to(dtype=weight.dtype, device=weight.device))
        self._activation = activation_fn(config.activation, config.firm_gamma)

    @property
    def n_features(self) -> int:
        return self.dictionary_weight.shape[0]

    @property
    def n_atoms(self) -> int:
        return self.dictionary_weight.shape[1]

    @property
    def thresholds(self) -> torch.Tensor:
        r"""Per-layer thresholds :math:`\theta_k = |\rho_k| \ge 0`, shape ``(n_layers,)``."""
        return self.threshold_param.abs()

    def layer_input(self, k: int, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, *, return_iterates: bool = False) -> torch.Tensor:
        """The code after the last layer, ``(B, n_atoms)``; with ``return_iterates`` all of
        :math:`z_0 = 0, z_1, \\dots, z_K` stacked as ``(n_layers + 1, B, n_atoms)``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"x must have shape (batch, n_features={self.n_features}), got {tuple(x.shape)}")
        if x.dtype != self.dictionary_weight.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the model has dtype {self.dictionary_weight.dtype}; "
                            "convert one of them")
        z = x.new_zeros(x.shape[0], self.n_atoms)
        iterates = [z]
        thresholds = self.thresholds

        def step(y, k, out):  # layer k: its affine map, then its thresholding activation
            return self._activation(self.layer_input(k, x, y), thresholds[k])

        def collect(k, z_next, z_prev, delta):
            iterates.append(z_next)
        z, _ = proximal_gradient(step, z, self.config.n_layers, momentum="none",
                                 monitor=collect if return_iterates else None)
        return torch.stack(iterates) if return_iterates else z

    def extra_repr(self) -> str:
        c = self.config
        return (f"n_features={self.n_features}, n_atoms={self.n_atoms}, n_layers={c.n_layers}, "
                f"activation={c.activation!r}")


def _initial_encoder(encoder, weight: torch.Tensor, name: str = "encoder") -> torch.Tensor:
    """Default encoder D / L (the ISTA step); otherwise a checked copy of the given (n_features, n_atoms) tensor."""
    if encoder is None:
        return weight / torch.linalg.matrix_norm(weight, ord=2) ** 2
    if not isinstance(encoder, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {tuple(weight.shape)} or None, "
                        f"got {type(encoder).__name__}")
    if tuple(encoder.shape) != tuple(weight.shape):
        raise ValueError(f"{name} must have the dictionary's shape {tuple(weight.shape)}, got {tuple(encoder.shape)}")
    if not torch.isfinite(encoder).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    return encoder.detach().to(weight.dtype).clone()


class LISTA(_UnrolledSolver):
    r"""LISTA of Gregor and LeCun (2010) with untied weights per layer.

    .. math:: z_{k+1} = \eta_{\theta_k}\big(W_e^k x + S^k z_k\big), \qquad z_0 = 0,

    initialized at ISTA: :math:`W_e^k = D^\top/L`, :math:`S^k = I - D^\top D/L`, :math:`L = \|D\|_2^2`.
    Implements chapter 10, equation ``eq-ch10-lista``.

    Args:
        dictionary: the ``LinearDictionary`` :math:`D` ``(n_features, n_atoms)``; its weight is stored as a fixed
            buffer and sets the dtype and device of the parameters.
        config: an ``UnrolledConfig`` (number of layers, activation, initial thresholds).

    Shape:
        - Input: ``(B, n_features)``, in the dictionary's dtype.
        - Output: ``(B, n_atoms)``; with ``return_iterates=True``, ``(n_layers + 1, B, n_atoms)``.
    """

    def __init__(self, dictionary: LinearDictionary, config: UnrolledConfig):
        super().__init__(dictionary, config)
        D = self.dictionary_weight
        step = 1.0 / float(torch.linalg.matrix_norm(D, ord=2) ** 2)
        K = config.n_layers
        self.encoder = nn.Parameter((step * D.T).expand(K, -1, -1).clone())                       # (K, m, n)
        eye = torch.eye(self.n_atoms, dtype=D.dtype, device=D.device)
        self.mutual_inhibition = nn.Parameter((eye - step * D.T @ D).expand(K, -1, -1).clone())   # (K, m, m)

    def layer_input(self, k, x, z):
        return x @ self.encoder[k].T + z @ self.mutual_inhibition[k].T


class LISTACP(_UnrolledSolver):
    r"""LISTA-CP of Chen et al. (2018): coupled weights, one encoder :math:`W_k` and threshold per layer.

    .. math:: z_{k+1} = \eta_{\theta_k}\big(z_k + W_k^\top (x - D z_k)\big), \qquad z_0 = 0,

    so that :math:`S^k = I - W_k^\top D` (the coupling under which the error can contract). ``encoder``
    (shape of :math:`D`) initializes every :math:`W_k`; default :math:`D/L` (ISTA).
    Implements chapter 10, equation ``eq-ch10-lista-cp``.

    Args:
        dictionary: the ``LinearDictionary`` :math:`D` ``(n_features, n_atoms)``; its weight is stored as a fixed
            buffer and sets the dtype and device of the parameters.
        config: an ``UnrolledConfig`` (number of layers, activation, initial thresholds).
        encoder: initial :math:`W_k` of every layer, a tensor of :math:`D`'s shape (default ``None``: :math:`D/L`).

    Shape:
        - Input: ``(B, n_features)``, in the dictionary's dtype.
        - Output: ``(B, n_atoms)``; with ``return_iterates=True``, ``(n_layers + 1, B, n_atoms)``.
    """

    def __init__(self, dictionary: LinearDictionary, config: UnrolledConfig, encoder: torch.Tensor | None = None):
        super().__init__(dictionary, config)
        W = _initial_encoder(encoder, self.dictionary_weight)
        self.encoders = nn.Parameter(W.expand(config.n_layers, -1, -1).clone())   # (K, n, m)

    def layer_input(self, k, x, z):
        residual = x - z @ self.dictionary_weight.T
        return z + residual @ self.encoders[k]


class ALISTA(_UnrolledSolver):
    r"""ALISTA of Liu et al. (2019): a fixed analytic encoder :math:`W`, a learned step and threshold per layer.

    .. math:: z_{k+1} = \eta_{\theta_k}\big(z_k - \gamma_k W^\top (D z_k - x)\big), \qquad z_0 = 0,

    with the analytic :math:`W` of :func:`cscnb.theory.generalized_coherence_weights` (chapter 10,
    ``eq-generalized-coherence``) unless ``encoder`` is given, and
    :math:`\gamma_k` initialized to ``step`` (default 1). Implements chapter 10, equation ``eq-ch10-alista``.

    Args:
        dictionary: the ``LinearDictionary`` :math:`D` ``(n_features, n_atoms)``; its weight is stored as a fixed
            buffer and sets the dtype and device of the parameters.
        config: an ``UnrolledConfig`` (number of layers, activation, initial thresholds).
        encoder: the fixed :math:`W`, a tensor of :math:`D`'s shape (default ``None``: the analytic weights).
        step: initial :math:`\gamma_k > 0` of every layer (default 1).

    Shape:
        - Input: ``(B, n_features)``, in the dictionary's dtype.
        - Output: ``(B, n_atoms)``; with ``return_iterates=True``, ``(n_layers + 1, B, n_atoms)``.
    """

    def __init__(self, dictionary: LinearDictionary, config: UnrolledConfig, encoder: torch.Tensor | None = None,
                 step: float = 1.0):
        super().__init__(dictionary, config)
        step = positive_number(step, "step")
        W = generalized_coherence_weights(self.dictionary_weight) if encoder is None else \
            _initial_encoder(encoder, self.dictionary_weight)
        self.register_buffer("encoder", W)
        self.steps = nn.Parameter(torch.full((config.n_layers,), float(step), dtype=W.dtype))

    def layer_input(self, k, x, z):
        return z - self.steps[k] * ((z @ self.dictionary_weight.T - x) @ self.encoder)


def theorem_thresholds(mu_tilde: float, sparsity: int, bound: float, n_layers: int) -> torch.Tensor:
    r"""Thresholds of the convergence theorem: :math:`\theta_k = \tilde\mu\, sB\,\big((2s-1)\tilde\mu\big)^k`.

    They dominate :math:`\tilde\mu\,\|z_k - z^\star\|_1` for every code with :math:`\|z^\star\|_0 \le s`
    and :math:`\|z^\star\|_\infty \le B`, which is what the proof needs. Returns a float64 tensor ``(n_layers,)``.
    Chapter 10, ``eq-ch10-theorem-thresholds``.
    """
    mu_tilde, bound = nonneg_number(mu_tilde, "mu_tilde"), nonneg_number(bound, "bound")
    sparsity, n_layers = positive_int(sparsity, "sparsity"), positive_int(n_layers, "n_layers")
    ratio = (2 * sparsity - 1) * mu_tilde
    k = torch.arange(n_layers, dtype=torch.float64)
    return mu_tilde * sparsity * bound * ratio ** k   # float64; a model casts it to its own dtype


def iterate_errors(iterates: torch.Tensor, z_star: torch.Tensor) -> torch.Tensor:
    r"""Errors :math:`\|z_k - z^\star\|_2` of iterates ``(K+1, B, m)`` against codes ``(B, m)``, shape ``(K+1, B)``.

    The quantity bounded by chapter 10, ``eq-ch10-rate-bound``.
    """
    if iterates.ndim != 3 or z_star.ndim != 2 or iterates.shape[1:] != z_star.shape:
        raise ValueError(f"iterates must be (K+1, B, m) and z_star (B, m); got {tuple(iterates.shape)} and "
                         f"{tuple(z_star.shape)}")
    return (iterates - z_star).norm(dim=2)


def empirical_rate(errors: torch.Tensor, floor: float = 1e-12) -> float:
    r"""Least-squares slope :math:`\hat c` of :math:`\log e_k \approx a - \hat c\,k` over layers with :math:`e_k > `
    ``floor`` (``errors`` is 1-D, entry k after k layers): the empirical linear rate of chapter 10,
    ``eq-ch10-empirical-rate``."""
    if not isinstance(errors, torch.Tensor):
        raise TypeError(f"errors must be a 1-D torch.Tensor (one error per layer), got {type(errors).__name__}")
    if errors.ndim != 1:
        raise ValueError(f"errors must be a 1-D tensor (one error per layer), got shape {tuple(errors.shape)}")
    k = torch.arange(errors.shape[0], dtype=torch.float64)
    keep = errors.double() > floor
    if int(keep.sum()) < 2:
        raise ValueError(f"need at least two errors above floor={floor} to fit a rate")
    k, log_e = k[keep], errors.double()[keep].log()
    k_centered = k - k.mean()
    return float(-(k_centered * (log_e - log_e.mean())).sum() / k_centered.square().sum())


def hopfield_energy(query: torch.Tensor, patterns: torch.Tensor, beta: float) -> torch.Tensor:
    r"""Energy of a modern Hopfield network (Ramsauer et al., 2021), per query ``(B,)``:

    .. math:: E(\xi) = \tfrac12\|\xi\|_2^2 - \tfrac1\beta \log\sum_{i=1}^m \exp(\beta\,k_i^\top \xi),

    ``query`` :math:`\xi` is ``(B, d)``, ``patterns`` (keys :math:`k_i` as rows) ``(m, d)``. A gradient step of
    size 1 on it is softmax attention with values = keys (chapter 10, ``eq-ch10-hopfield-energy``).
    """
    if not isinstance(query, torch.Tensor) or not isinstance(patterns, torch.Tensor):
        raise TypeError("query and patterns must be torch.Tensors")
    if query.ndim != 2 or patterns.ndim != 2 or query.shape[1] != patterns.shape[1]:
        raise ValueError(f"query must be (B, d) and patterns (m, d) with the same d, got {tuple(query.shape)} "
                         f"and {tuple(patterns.shape)}")
    beta = positive_number(beta, "beta")
    return 0.5 * query.square().sum(dim=1) - torch.logsumexp(beta * query @ patterns.T, dim=1) / beta
