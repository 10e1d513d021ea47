"""What things cost: the CSC layer timed against its own convolutions, and training-run cost models.

* :mod:`~cscnb.profiling.timers` — interleaved median timings, the CSC layer's cost floor
  :math:`K t_a + (K-1) t_s` and the share of a training step spent on the step size (chapter 12;
  ``benchmarks/bench_csc_layer.py``);
* :mod:`~cscnb.profiling.cost_models` — FLOPs of a training step, the closed-form multiply-accumulates
  of a CSC layer and wall time for an assumed throughput (chapter 14).
"""
from .cost_models import csc_layer_macs, training_flops, training_hours
from .timers import (
    conv_primitive_calls,
    csc_layer_floor,
    forward_backward_call,
    forward_call,
    interleaved_medians,
    interleaved_times,
    layer_costs,
    step_size_share,
)

__all__ = ["interleaved_medians", "interleaved_times", "forward_call", "forward_backward_call", "csc_layer_floor",
           "step_size_share", "conv_primitive_calls", "layer_costs", "csc_layer_macs", "training_flops",
           "training_hours"]
