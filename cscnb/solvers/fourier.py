r"""Sparse coding with a circular convolutional dictionary in the Fourier domain.

A :class:`~cscnb.core.dictionary.ConvDictionary` with ``padding_mode="circular"``, stride 1 and
"same" padding (code size = signal size) is a sum of circular convolutions,

.. math:: (Dz)_c = \sum_{m} h_{m,c} \circledast z_m, \qquad
          \widehat{(Dz)}_c(\omega) = \sum_m \hat h_{m,c}(\omega)\,\hat z_m(\omega),

where :math:`h_{m,c}` is atom :math:`(m, c)` placed on the signal grid so that its tap ``padding``
sits at the origin (chapter 3, ``eq-conv-synthesis``, with periodic boundary). The DFT turns
:math:`D` into one small :math:`C \times M` matrix :math:`\hat H(\omega)` per frequency, so

* :math:`D` and :math:`D^\top` cost one real FFT of the code (or the signal) and a sum over atoms;
* the Lipschitz constant of :math:`\nabla\tfrac12\|x - Dz\|^2` has the closed form
  :math:`L = \|D^\top D\|_2 = \max_\omega \lambda_{\max}\big(\hat H(\omega)\hat H(\omega)^{\mathsf H}\big)`
  (for one channel :math:`\max_\omega \sum_m |\hat h_m(\omega)|^2`) — no power iteration.

:func:`fourier_fista` runs restarted FISTA (O'Donoghue and Candès, 2015) with these operators. It
never stores the code's spectrum: since :math:`y_{k+1} = z_{k+1} + \beta(z_{k+1} - z_k)` is linear,
the synthesis of :math:`y` is the same combination of the (one-channel) syntheses of the
iterates, so each iteration costs one forward FFT of :math:`z_{k+1}` and one inverse FFT of the
gradient — the same two transforms per iteration as Fourier-domain ADMM (Wohlberg, 2016).
This is the benchmark path of ``cscnb.solve(..., method="fista_restart")`` (chosen automatically
by :func:`prefer_fourier`); chapter 3 derives the convolutional model it solves.
"""
from __future__ import annotations

import math

import torch

from ..core.dictionary import ConvDictionary
from ..core.prox import elastic_net_prox
from ..core.validation import check_choice
from .engine import proximal_gradient

__all__ = ["FourierConvOperator", "fourier_applicable", "prefer_fourier", "use_fourier", "fourier_fista", "DOMAINS"]

#: ``solve(..., domain=...)``: the automatic rule, or forced convolutions, or forced FFTs
DOMAINS = ("auto", "spatial", "fourier")

#: smallest kernel area (taps per atom and channel) for which the automatic rule picks the Fourier path,
#: with one input channel and with several (measured: ``benchmarks/bench_solvers.py --problems rule``)
FOURIER_MIN_KERNEL_AREA = 25
FOURIER_MIN_KERNEL_AREA_MULTICHANNEL = 49


def fourier_applicable(dictionary, signal_size) -> bool:
    """True when ``dictionary`` is a circular, stride-1 ``ConvDictionary`` whose code has the signal's size."""
    if not isinstance(dictionary, ConvDictionary) or dictionary.padding_mode != "circular":
        return False
    if any(s != 1 for s in dictionary.stride):
        return False
    return tuple(dictionary.code_size(signal_size)) == tuple(int(n) for n in signal_size)


def use_fourier(method: str, domain: str, dictionary, signal_size) -> bool:
    """Whether :func:`cscnb.solve` takes a Fourier path (``domain``, ``method``); raises for impossible requests."""
    check_choice(domain, "domain", DOMAINS)
    if method == "admm_fourier":
        if domain == "spatial":
            raise ValueError("method='admm_fourier' runs in the Fourier domain; domain='spatial' contradicts it")
        if not fourier_applicable(dictionary, signal_size):
            raise ValueError("method='admm_fourier' needs a ConvDictionary with padding_mode='circular', stride 1 "
                             "and code size = signal size (padding = dilation·(kernel − 1)/2)")
        return True
    if domain == "fourier":
        if method != "fista_restart":
            raise ValueError(f"domain='fourier' needs method='fista_restart', got method={method!r} "
                             "(the textbook methods run in the spatial domain)")
        if not fourier_applicable(dictionary, signal_size):
            raise ValueError("domain='fourier' needs a ConvDictionary with padding_mode='circular', stride 1 and "
                             "code size = signal size (padding = dilation·(kernel − 1)/2)")
        return True
    return domain == "auto" and method == "fista_restart" and prefer_fourier(dictionary, signal_size)


def prefer_fourier(dictionary, signal_size) -> bool:
    r"""The automatic rule of ``solve(..., method="fista_restart")``: Fourier path iff applicable and
    the kernel has at least 25 taps (one input channel) or 49 taps (several), e.g. 5×5 or 7×7.

    Why kernel area: a spatial iteration costs two convolutions, :math:`\propto M C k^d n^d`; a
    Fourier iteration costs two FFTs of :math:`M` maps, :math:`\propto M n^d \log n`, plus
    :math:`M C n^d` complex products. The FFT cost does not grow with the kernel, the convolution
    cost does. The thresholds are where the measured per-iteration times cross (float32, 32 atoms,
    128×128, one CPU thread: ``benchmarks/bench_solvers.py --problems rule``, see
    ``benchmarks/README.md``); for a 3×3 kernel with one channel the two paths tie.
    """
    if not fourier_applicable(dictionary, signal_size):
        return False
    threshold = FOURIER_MIN_KERNEL_AREA if dictionary.in_channels == 1 else FOURIER_MIN_KERNEL_AREA_MULTICHANNEL
    return math.prod(dictionary.kernel_size) >= threshold


class FourierConvOperator:
    r""":math:`D` and :math:`D^\top` of a circular ``ConvDictionary`` applied by real FFTs.

    ``spectra`` holds :math:`\hat h_{m,c}(\omega)`, shape ``(M, C, *rfft_size)``, computed once.
    ``synthesize``/``analyze`` equal the dictionary's (up to rounding); ``lipschitz_constant`` is
    the closed form :math:`\max_\omega \lambda_{\max}(\hat H(\omega)\hat H(\omega)^{\mathsf H})`.
    Implements chapter 3, ``eq-conv-synthesis`` and ``eq-conv-analysis``, for periodic boundaries.
    """

    def __init__(self, dictionary: ConvDictionary, signal_size, dtype: torch.dtype | None = None):
        if not fourier_applicable(dictionary, signal_size):
            raise ValueError("the Fourier path needs a ConvDictionary with padding_mode='circular', stride 1 and "
                             f"code size = signal size; got {dictionary!r} for signal size {tuple(signal_size)}")
        self.signal_size = tuple(int(n) for n in signal_size)
        self.dims = tuple(range(-len(self.signal_size), 0))
        weight = dictionary.weight if dtype is None else dictionary.weight.to(dtype)
        self.dtype = weight.dtype
        # the atom on the signal grid: tap j (times the dilation) lands at j·d − padding (mod n)
        grid = weight.new_zeros(*weight.shape[:2], *self.signal_size)
        index = [slice(None), slice(None)]
        for _n, k, d in zip(self.signal_size, dictionary.kernel_size, dictionary.dilation, strict=True):
            index.append(slice(0, d * (k - 1) + 1, d))
        grid[tuple(index)] = weight
        grid = torch.roll(grid, shifts=tuple(-p for p in dictionary.padding), dims=self.dims)
        self.spectra = torch.fft.rfftn(grid, dim=self.dims)          # (M, C, *freq)
        self.n_atoms, self.in_channels = weight.shape[:2]

    def rfft(self, t: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfftn(t, dim=self.dims)

    def irfft(self, t: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfftn(t, s=self.signal_size, dim=self.dims)

    def synthesize_spectrum(self, code_spectrum: torch.Tensor, overwrite: bool = False) -> torch.Tensor:
        """``(B, M, *freq)`` → ``(B, C, *freq)``: the spectrum of D z.

        ``overwrite``: with one channel, ``code_spectrum``'s memory may be used (no autograd).
        """
        if overwrite and self.in_channels == 1:
            return code_spectrum.mul_(self.spectra[:, 0]).sum(dim=1, keepdim=True)
        # one channel at a time: an einsum over complex tensors permutes and copies them
        return torch.stack([(self.spectra[:, c] * code_spectrum).sum(dim=1) for c in range(self.in_channels)],
                           dim=1)

    def analyze_spectrum(self, signal_spectrum: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C, *freq)`` → ``(B, M, *freq)``: the spectrum of Dᵀ x (written into ``out`` if given)."""
        out = torch.mul(self.spectra[:, 0].conj(), signal_spectrum[:, :1], out=out)
        for c in range(1, self.in_channels):
            out.addcmul_(self.spectra[:, c].conj(), signal_spectrum[:, c:c + 1])
        return out

    def synthesize(self, z: torch.Tensor) -> torch.Tensor:
        return self.irfft(self.synthesize_spectrum(self.rfft(z)))

    def analyze(self, x: torch.Tensor) -> torch.Tensor:
        return self.irfft(self.analyze_spectrum(self.rfft(x)))

    def lipschitz_constant(self) -> float:
        r""":math:`\|D^\top D\|_2` exactly: the largest eigenvalue over frequencies of :math:`\hat H\hat H^{\mathsf H}`.

        The real DFT keeps half of the frequencies; the others are complex conjugates, whose
        matrices have the same eigenvalues, so the maximum over the kept half is the maximum.
        """
        with torch.no_grad():
            if self.in_channels == 1:
                return float(self.spectra.abs().square().sum(dim=(0, 1)).max())
            per_freq = self.spectra.flatten(2).permute(2, 1, 0)              # (F, C, M)
            gram = per_freq @ per_freq.conj().transpose(1, 2)                # (F, C, C), Hermitian
            return float(torch.linalg.eigvalsh(gram).amax())


def _phase(op: FourierConvOperator, x_spectrum, z, lam_t, mu, nonneg, step, max_iter, tol, check_every,
           inplace: bool):
    """Restarted FISTA from ``z`` in ``op``'s precision; returns (z, iterations, every sample converged).

    The engine's loop (:func:`cscnb.solvers.engine.proximal_gradient`, ``"restart"`` momentum) carries the
    spectrum of :math:`Dz` as the iterate's image, so one forward FFT (of :math:`z_{k+1}`) and one inverse FFT
    (of the gradient) per iteration suffice. ``inplace`` (no autograd): every large array is written into
    reused buffers — the arrays are M maps of the image, and fresh allocations every iteration cost page
    faults and extra passes over memory, which dominate once the FFTs are fast.
    """
    threshold, shrink = lam_t * step, mu * step
    if threshold.ndim == 0 and not threshold.requires_grad:
        threshold = float(threshold)  # one number: the prox's one-pass path, no device sync per iteration
    buffers = {}

    def buffer(name, shape, dtype):
        if not inplace:
            return None
        if name not in buffers or buffers[name].shape != shape:
            buffers[name] = torch.empty(shape, dtype=dtype, device=x_spectrum.device)
        return buffers[name]

    def step_map(y, k, out, synth_y):
        residual = synth_y - x_spectrum
        spectrum = op.analyze_spectrum(residual, out=buffer(
            "spectrum", (residual.shape[0], op.n_atoms, *residual.shape[2:]), residual.dtype))
        u = torch.fft.irfftn(spectrum, s=op.signal_size, dim=op.dims, out=buffer("u", y.shape, y.dtype))  # Dᵀ(Dy − x)
        u = torch.add(y, u, alpha=-step, out=u if inplace else None)
        z_next = elastic_net_prox(u, threshold, shrink, nonneg, out=out, check=False)
        spectrum = torch.fft.rfftn(z_next, dim=op.dims, out=spectrum if inplace else None)
        return z_next, op.synthesize_spectrum(spectrum, overwrite=inplace)

    state = {"converged": False}

    def monitor(k, z_next, z_prev, delta):
        with torch.no_grad():
            converged = delta.flatten(1).norm(dim=1) <= tol * z_next.flatten(1).norm(dim=1)
            state["converged"] = bool(converged.all())
        return True if state["converged"] else None

    synth_z = op.synthesize_spectrum(op.rfft(z))      # spectrum of D z (C channels only)
    z, k = proximal_gradient(step_map, z, max_iter, momentum="restart", inplace=inplace, image=synth_z,
                             monitor=monitor, check_every=check_every)
    return z, k, state["converged"]


def fourier_fista(dictionary: ConvDictionary, x: torch.Tensor, lam_t: torch.Tensor, mu: float, nonneg: bool,
                  z0: torch.Tensor, max_iter: int, tol: float, iterate_dtype: torch.dtype | None = None,
                  check_every: int = 5):
    r"""Restarted FISTA in the Fourier domain for a circular convolutional dictionary.

    .. math:: \hat z = \argmin_z \tfrac12\Big\|x - \sum_m h_m \circledast z_m\Big\|_2^2
              + \sum_i \lambda_i |z_i| + \tfrac{\mu}{2}\|z\|_2^2 \quad(z \ge 0 \text{ if } \texttt{nonneg}),

    the problem of :func:`cscnb.solve` (chapter 5 ``eq-fista`` with gradient restart) for the
    convolutional model of chapter 3 (``eq-ch3-csc``); step :math:`1/L` with the closed-form :math:`L` of
    :meth:`FourierConvOperator.lipschitz_constant`. The batch stops when every sample's relative
    change is below ``tol`` (checked every ``check_every`` iterations). With ``iterate_dtype``
    (e.g. ``torch.float32`` for a float64 problem) the iterations run in that precision until the
    change is below ``max(tol, 10·eps)``, then continue in ``x``'s dtype until ``tol``: the returned
    code is always an iterate in ``x``'s dtype, checked by iterations in that dtype.
    Returns ``(z, n_iter, converged)``.
    """
    signal_size = tuple(x.shape[2:])
    needs_grad = torch.is_grad_enabled() and any(
        t_.requires_grad for t_ in (x, z0, lam_t, dictionary.weight))
    total = 0
    z = z0
    op = FourierConvOperator(dictionary, signal_size)
    L = op.lipschitz_constant()
    if L == 0:
        raise ValueError("the dictionary is all zeros (Lipschitz constant 0); there is nothing to code with")
    low = iterate_dtype is not None and iterate_dtype != x.dtype
    if low:
        op_low = FourierConvOperator(dictionary, signal_size, dtype=iterate_dtype)
        step_low = 1.0 / op_low.lipschitz_constant()
        x_low = x.to(iterate_dtype)
        phase_tol = max(tol, 10 * torch.finfo(iterate_dtype).eps)
        z, total, _ = _phase(op_low, op_low.rfft(x_low), z.to(iterate_dtype), lam_t.to(iterate_dtype), mu, nonneg,
                             step_low, max_iter, phase_tol, check_every, not needs_grad)
        z = z.to(x.dtype)
    # after a low-precision phase, the check comes early: the iterate is usually converged already
    z, k, converged = _phase(op, op.rfft(x), z, lam_t, mu, nonneg, 1.0 / L, max(max_iter - total, 1), tol,
                             1 if low else check_every, not needs_grad)
    return z, total + k, converged
