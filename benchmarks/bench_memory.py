"""Memory of the CSC layer's forward+backward: unrolled vs implicit gradient at n_iter K = 2, 5, 10.

Prints one JSON object. Usage, from the repository root:

    .venv/bin/python benchmarks/bench_memory.py [--batch 32] [--channels 64] [--size 32] [--device cpu]

Each configuration runs in its own fresh Python process (a process's peak memory never goes down).
Two measures per configuration:

* saved_bytes: total bytes of the distinct tensor storages autograd saves for the backward pass,
  recorded by torch.autograd.graph.saved_tensors_hooks during the forward (device-independent; the
  memory that grows with K in an unrolled graph);
* peak_delta_bytes: on CPU, peak resident set size (resource.getrusage ru_maxrss) at the end of
  forward+backward minus the current RSS (/proc/self/statm) measured in the same process just before
  the forward (after building the layer, the input and the step size, so that setup sets no later
  peak; valid only if the run set a new peak, recorded as new_peak). On CUDA:
  torch.cuda.max_memory_allocated minus memory_allocated before the forward (this code path exists
  but was not run on the development machine, which has no GPU).

Target: implicit peak at K = 10 within 1.2x of implicit at K = 2.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = 1.2


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, default=64, help="input and output channels")
    parser.add_argument("--size", type=int, default=32, help="spatial size of the input")
    parser.add_argument("--n-iters", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", nargs=2, metavar=("BACKWARD", "K"), help=argparse.SUPPRESS)
    return parser.parse_args()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def child(args) -> dict:
    import torch
    sys.path.insert(0, str(HERE.parent))
    from cscnb.nn.csc_layer import CSCLayer

    torch.set_num_threads(args.threads)
    backward, n_iter = args.child[0], int(args.child[1])
    device = torch.device(args.device)
    torch.manual_seed(0)
    # the synthesis is pinned: choosing it by timing would allocate code-sized tensors before the baseline
    layer = CSCLayer(args.channels, args.channels, 3, padding=1, n_iter=n_iter, backward=backward,
                     synthesis="conv_transpose2d").to(device)
    x = torch.randn(args.batch, args.channels, args.size, args.size, device=device, requires_grad=True)
    layer.lipschitz(x)  # step size for this input size (batch-1 power iterations), before the baseline
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[(storage.data_ptr(), storage.device)] = storage.nbytes()
        return t
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        before, peak_before = _rss_bytes(), _peak_rss_bytes()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = layer(x)
    out.backward(torch.ones_like(out))
    if cuda:
        torch.cuda.synchronize(device)
        peak_delta, new_peak = torch.cuda.max_memory_allocated(device) - before, True
    else:
        peak_after = _peak_rss_bytes()
        peak_delta, new_peak = peak_after - before, peak_after > peak_before
    return {"backward": backward, "n_iter": n_iter, "saved_bytes": sum(storages.values()),
            "saved_storages": len(storages), "peak_delta_bytes": peak_delta, "new_peak": new_peak,
            "output_bytes": out.numel() * out.element_size(), "device": str(device)}


def main():
    args = _parse()
    if args.child:
        print(json.dumps(child(args)))
        return
    sys.path.insert(0, str(HERE))
    from _provenance import provenance
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    runs = []
    for backward in ("unroll", "implicit"):
        for n_iter in args.n_iters:
            command = [sys.executable, str(Path(__file__).resolve()), "--batch", str(args.batch), "--channels",
                       str(args.channels), "--size", str(args.size), "--device", args.device, "--threads",
                       str(args.threads), "--child", backward, str(n_iter)]
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                runs.append({"backward": backward, "n_iter": n_iter, "error": done.stderr[-2000:]})
            else:
                runs.append(json.loads(done.stdout))
    table = {f"{r['backward']}_K{r['n_iter']}": r for r in runs}

    def ratio(measure, backward):
        first, last = table.get(f"{backward}_K{args.n_iters[0]}"), table.get(f"{backward}_K{args.n_iters[-1]}")
        if not first or not last or measure not in first or measure not in last:
            return None
        return last[measure] / first[measure]
    mib = {name: {"saved_MiB": round(r["saved_bytes"] / 2**20, 1),
                  "peak_delta_MiB": round(r["peak_delta_bytes"] / 2**20, 1)}
           for name, r in table.items() if "saved_bytes" in r}
    implicit_peak_ratio = ratio("peak_delta_bytes", "implicit")
    result = {
        "benchmark": "bench_memory: CSCLayer forward+backward memory, unrolled vs implicit gradient",
        "shape": {"batch": args.batch, "in_channels": args.channels, "out_channels": args.channels,
                  "size": args.size, "kernel_size": 3, "padding": 1, "dtype": "float32"},
        "method": {"saved_bytes": "distinct storages saved for backward (torch.autograd.graph.saved_tensors_hooks)",
                   "peak_delta_bytes": ("CPU: ru_maxrss after forward+backward minus current RSS before the forward, "
                                        "fresh process per configuration; CUDA: max_memory_allocated minus "
                                        "memory_allocated before (untested here)")},
        "summary_MiB": mib,
        "ratios_last_over_first_K": {
            f"{b}_{m}": ratio(m, b) for b in ("unroll", "implicit") for m in ("saved_bytes", "peak_delta_bytes")},
        "target": f"implicit peak at K={args.n_iters[-1]} within {TARGET}x of K={args.n_iters[0]}",
        "target_met": implicit_peak_ratio is not None and implicit_peak_ratio <= TARGET,
        "runs": runs,
        "provenance": provenance(args.threads),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
