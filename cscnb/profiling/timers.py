r"""What the CSC layer costs against its own convolutions (chapter 12, ``eq-ch12-floor``).

From :math:`z_0 = 0`, :math:`K` FISTA steps of the CSC layer in residual form compute :math:`K` analyses
(:math:`A^\top x` once, then :math:`A^\top(x - Ay)` per further step) and :math:`K - 1` syntheses
:math:`Ay`, so an implementation that runs exactly these convolutions takes at least their summed time, the
*floor*

.. math:: T_{\text{floor}}(K) = K\,t_a + (K - 1)\,t_s ,

with :math:`t_a` the time of ``conv2d`` at the layer's shape and :math:`t_s` the time of the fastest
exact synthesis (``conv_transpose2d`` or ``conv2d`` with the flipped, transposed weight). The same
count with forward+backward times of the primitives gives the floor of a training step.

Timing method, shared by ``benchmarks/bench_csc_layer.py`` and chapter 12: every candidate is run
once to warm up, then ``repeats`` rounds call all candidates in turn (interleaved, so load from other
processes hits all alike) and the **median** per candidate is reported. Ratios measured within one
call are what counts on a shared machine.
"""
from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.validation import positive_int
from ..nn.csc_layer import frozen_step_size
from ..nn.csc_ops import SYNTHESES, flipped_available, synchronize, synthesis_operator

__all__ = ["interleaved_medians", "interleaved_times", "forward_call", "forward_backward_call", "csc_layer_floor",
           "step_size_share", "conv_primitive_calls", "layer_costs"]


def interleaved_medians(calls: dict, repeats: int = 7, device="cpu") -> dict:
    """Median wall time (s) of each zero-argument callable: one warm-up each, then ``repeats`` interleaved rounds.

    The timing method behind :math:`t_a`, :math:`t_s` and the layer times of chapter 12 (``eq-ch12-floor``).
    """
    return {name: statistics.median(values) for name, values in interleaved_times(calls, repeats, device).items()}


def interleaved_times(calls: dict, repeats: int = 7, device="cpu") -> dict:
    """All wall times (s) per callable: one warm-up each, then ``repeats`` rounds calling every callable in turn.

    Interleaving makes load from other processes hit every candidate alike (chapter 12, ``eq-ch12-floor``).
    """
    if not calls:
        raise ValueError("calls must name at least one callable")
    repeats = positive_int(repeats, "repeats")
    times = {name: [] for name in calls}
    for call in calls.values():
        call()
    for _ in range(repeats):
        for name, call in calls.items():
            synchronize(device)
            start = time.perf_counter()
            call()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def forward_call(fn, *inputs):
    """A callable running ``fn(*inputs)`` without autograd: the forward time of chapter 12, ``eq-ch12-floor``."""
    def call():
        with torch.no_grad():
            return fn(*inputs)
    return call


def forward_backward_call(fn, inputs, params=()):
    r"""A callable running ``fn(*inputs)`` and :math:`\nabla\langle g, \mathrm{out}\rangle` w.r.t. inputs and params.

    ``g`` is a fixed random tensor; the forward+backward time of chapter 12, ``eq-ch12-floor``.
    """
    leaves = [t for t in (*inputs, *params) if t.requires_grad]
    state = {}

    def call():
        out = fn(*inputs)
        if "g" not in state:
            state["g"] = torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out)
        return torch.autograd.grad(out, leaves, state["g"])
    return call


def csc_layer_floor(t_analysis: float, t_synthesis: float, n_iter: int) -> float:
    r""":math:`K t_a + (K - 1) t_s`: the time of the convolutions alone in :math:`K` CSC steps (``eq-ch12-floor``)."""
    n_iter = positive_int(n_iter, "n_iter")
    return n_iter * t_analysis + (n_iter - 1) * t_synthesis


def conv_primitive_calls(x: torch.Tensor, weight: torch.Tensor, stride=(1, 1), padding=(0, 0), backward=False) -> dict:
    """Callables for the layer's primitives at its shape: ``analysis`` (conv2d) and each available exact synthesis.

    ``backward=True``: forward+backward (gradients w.r.t. the primitive's input and weight).
    """
    stride, padding = tuple(stride), tuple(padding)
    with torch.no_grad():
        code = F.conv2d(x, weight, None, stride, padding)
    kinds = [k for k in SYNTHESES if k != "conv2d" or flipped_available(weight.shape[2:], stride, padding)]
    size = tuple(x.shape[2:])
    if not backward:
        calls = {"analysis": forward_call(lambda a: F.conv2d(a, weight, None, stride, padding), x)}
        for kind in kinds:
            calls[f"synthesis_{kind}"] = forward_call(
                lambda z, kind=kind: synthesis_operator(weight, stride, padding, size, kind)(z), code)
        return calls
    xg, wg, zg = x.detach().requires_grad_(), weight.detach().requires_grad_(), code.detach().requires_grad_()
    calls = {"analysis": forward_backward_call(lambda a, w: F.conv2d(a, w, None, stride, padding), (xg, wg))}
    for kind in kinds:
        calls[f"synthesis_{kind}"] = forward_backward_call(
            lambda z, w, kind=kind: synthesis_operator(w, stride, padding, size, kind)(z), (zg, wg))
    return calls


def layer_costs(layer: nn.Module, x: torch.Tensor, n_iters=(2, 5, 10), repeats: int = 7, backward: bool = False,
                floor_sequences: bool = True) -> dict:
    """Times (s) of ``layer`` at each ``n_iter``, its floor, ``nn.Conv2d`` at the same shape, and the ratios.

    ``layer`` is a :class:`cscnb.nn.csc_layer.CSCLayer` (its ``n_iter`` is set in turn and restored);
    ``backward=True`` times forward+backward (gradients w.r.t. ``x`` and the parameters). All candidates
    are timed in one interleaved loop (:func:`interleaved_times`). Returns a dict with ``primitives``
    (median times), ``t_analysis``, ``t_synthesis`` (the fastest synthesis and its name), ``conv2d`` and
    per ``n_iter``: ``layer``, ``floor`` (:math:`K t_a + (K-1) t_s` from the medians), ``ratio_to_floor``,
    ``ratio_to_conv2d`` and ``paired_ratio_to_floor`` (median over rounds of the ratio within a round).

    ``floor_sequences=True`` also times the floor as one call, the :math:`K` analyses and :math:`K - 1`
    syntheses run back to back (``floor_sequence``, ``ratio_to_floor_sequence``, and its paired
    version): on a machine shared with bursty jobs a short primitive call often fits between bursts
    while a long layer call never does, which biases the sum of short medians low; a sequence as long
    as the layer's call meets the same load.
    """
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                     bias=False).to(dtype=x.dtype, device=x.device)
    weight = layer.dictionary_weight().detach()
    primitive_calls = conv_primitive_calls(x, weight, layer.stride, layer.padding, backward)
    calls = {f"primitive_{name}": call for name, call in primitive_calls.items()}
    saved_n_iter = layer.n_iter
    layer.lipschitz(x)  # the step size for this input size; frozen below: no power iteration while timing
    xg = x.detach().requires_grad_(backward)
    params = [p for p in layer.parameters() if p.requires_grad]
    sequence_synthesis = None
    if floor_sequences:  # which synthesis the sequences use: the faster one in a short pre-run
        pre = interleaved_medians({n: c for n, c in primitive_calls.items() if n.startswith("synthesis_")}, 3, x.device)
        sequence_synthesis = min(pre, key=pre.__getitem__)
    for n_iter in n_iters:
        def run(a, n_iter=n_iter):
            layer.n_iter = n_iter
            return layer(a)
        calls[f"layer_K{n_iter}"] = forward_backward_call(run, (xg,), params) if backward else forward_call(run, x)
        if floor_sequences:
            def sequence(n_iter=n_iter):
                for _ in range(n_iter):
                    primitive_calls["analysis"]()
                for _ in range(n_iter - 1):
                    primitive_calls[sequence_synthesis]()
            calls[f"floor_K{n_iter}"] = sequence
    calls["conv2d"] = forward_backward_call(conv, (xg,), list(conv.parameters())) if backward else forward_call(conv, x)
    try:
        with frozen_step_size(layer):
            times = interleaved_times(calls, repeats, x.device)
    finally:
        layer.n_iter = saved_n_iter
    medians = {name: statistics.median(values) for name, values in times.items()}
    primitives = {name[len("primitive_"):]: t for name, t in medians.items() if name.startswith("primitive_")}
    synthesis_name = min((n for n in primitives if n.startswith("synthesis_")), key=primitives.__getitem__)
    t_a, t_s = primitives["analysis"], primitives[synthesis_name]
    result = {"primitives": primitives, "t_analysis": t_a, "t_synthesis": t_s,
              "fastest_synthesis": synthesis_name[len("synthesis_"):], "conv2d": medians["conv2d"],
              "sequence_synthesis": sequence_synthesis and sequence_synthesis[len("synthesis_"):], "per_n_iter": {}}
    for n_iter in n_iters:
        t_layer, floor = medians[f"layer_K{n_iter}"], csc_layer_floor(t_a, t_s, n_iter)
        paired = [t / csc_layer_floor(a, s, n_iter) for t, a, s in
                  zip(times[f"layer_K{n_iter}"], times["primitive_analysis"], times[f"primitive_{synthesis_name}"],
                      strict=True)]
        row = {"layer": t_layer, "floor": floor, "ratio_to_floor": t_layer / floor,
               "paired_ratio_to_floor": statistics.median(paired), "ratio_to_conv2d": t_layer / medians["conv2d"]}
        if floor_sequences:
            sequence_times = times[f"floor_K{n_iter}"]
            row.update(floor_sequence=medians[f"floor_K{n_iter}"],
                       ratio_to_floor_sequence=t_layer / medians[f"floor_K{n_iter}"],
                       paired_ratio_to_floor_sequence=statistics.median(
                           [t / f for t, f in zip(times[f"layer_K{n_iter}"], sequence_times, strict=True)]))
        result["per_n_iter"][n_iter] = row
    return result


def step_size_share(layer: nn.Module, x: torch.Tensor, n_steps: int = 5, lr: float = 1e-3) -> dict:
    r"""Share of a training step's layer time spent on the step size (chapter 12, ``eq-ch12-step``).

    Runs ``n_steps`` training steps of ``layer`` alone (forward, backward of :math:`\langle g, z\rangle`,
    an SGD update of the weight, which changes it in place as an optimizer does) after one warm-up
    step. Per step it times the refresh a training forward pass runs (:meth:`CSCLayer.update_step_size`:
    ``power_iters`` warm power iterations at batch size 1) separately from forward+backward with that
    step size (:func:`cscnb.nn.csc_layer.frozen_step_size`), and counts
    ``PowerIterationStep.power_iterations``. Returns ``share`` = step-size time / total,
    ``power_iterations_per_step`` (a list) and the median times.
    """
    params = [p for p in layer.parameters() if p.requires_grad]
    g = None
    power, total, counts = [], [], []
    for step in range(n_steps + 1):
        before = layer.step_size.power_iterations
        synchronize(x.device)
        start = time.perf_counter()
        layer.update_step_size(x)
        synchronize(x.device)
        middle = time.perf_counter()
        with frozen_step_size(layer):
            out = layer(x)
        if g is None:
            g = torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out)
        grads = torch.autograd.grad(out, params, g)
        synchronize(x.device)
        end = time.perf_counter()
        with torch.no_grad():
            for p, grad in zip(params, grads, strict=True):
                p.sub_(lr * grad)  # in place, like an optimizer step: the weight's version changes
        if step > 0:  # step 0 estimates L from scratch for the new input size
            power.append(middle - start)
            total.append(end - start)
            counts.append(layer.step_size.power_iterations - before)
    return {"share": sum(power) / sum(total), "power_iterations_per_step": counts,
            "median_step_size_s": statistics.median(power), "median_step_s": statistics.median(total)}
