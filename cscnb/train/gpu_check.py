"""``python -m cscnb.train.gpu_check`` (``make gpu-check``): a GPU machine's self-check, in minutes.

On a machine with an NVIDIA GPU (after ``make gpu-setup``) it runs, within a time budget (default 7
minutes of the 8 the check may take on one GPU):

1. the environment: torch and CUDA versions, the GPU, the ``nvidia-*`` libraries torch loaded;
2. the CUDA tests (``pytest -m cuda`` plus the tests whose name mentions cuda);
3. the CSC layer on the device: forward+backward times at the SDNet stem and block shapes (K = 2),
   timed with :mod:`cscnb.profiling.timers`, and ``benchmarks/bench_memory.py --device cuda``;
4. a one-process DDP run (NCCL) of the training system through ``torch.distributed.run``;
5. ~200 training steps each of ``resnet18``, ``sdnet18`` and ``sdnet18_all`` (width 64, batch 128,
   synthetic CIFAR-shaped data, the reproduction presets' settings) in float32, bf16 autocast and
   compiled (bf16), printing images/s for each and the SDNet/ResNet ratios.

It writes one JSON (``_build/gpu-check/gpu_check.json`` or ``--out``) with provenance. Without CUDA
it says so and exits 0. ``--device cpu --steps 3 --width 8 --batch-size 16`` runs the same code on the
CPU as a dry run (the unit tests do this); the CUDA tests, the memory benchmark and the DDP run use
gloo / CPU there, and ``--skip`` leaves steps out.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import torch

from ..core.validation import positive_int
from . import results

__all__ = ["main", "throughput", "layer_times"]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARTS = ("tests", "layer", "memory", "ddp", "training")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cscnb.train.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run")
    parser.add_argument("--steps", type=int, default=200, help="timed training steps per model and variant")
    parser.add_argument("--width", type=int, default=64, help="channels of the first stage")
    parser.add_argument("--batch-size", type=int, default=128, help="batch of the training steps (CIFAR recipe: 128)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before the timed ones (compilation)")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds; later parts are skipped beyond it")
    parser.add_argument("--out", default=os.path.join("_build", "gpu-check", "gpu_check.json"), help="JSON path")
    parser.add_argument("--skip", nargs="*", default=[], choices=PARTS, help="parts to leave out")
    parser.add_argument("--compile-backend", default="inductor",
                        help="torch.compile backend of the compiled variant (eager: a quick CPU dry run)")
    return parser


def _environment(device: torch.device) -> dict:
    info = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
            "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                    capability=f"{props.major}.{props.minor}", cudnn=torch.backends.cudnn.version(),
                    nccl=".".join(map(str, torch.cuda.nccl.version())) if hasattr(torch.cuda, "nccl") else None)
        with open("/proc/self/maps", encoding="utf-8") as maps:  # the CUDA libraries this process loaded
            info["nvidia_libraries"] = sorted({os.path.basename(line.split()[-1]) for line in maps
                                               if "nvidia" in line and ".so" in line})
    return info


def _run(command: list, timeout: float, env=None) -> dict:
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=max(timeout, 1), cwd=REPO,
                              env={**os.environ, "PYTHONPATH": REPO, **(env or {})})
        out = {"returncode": done.returncode, "tail": (done.stdout + done.stderr)[-1500:]}
    except subprocess.TimeoutExpired:
        out = {"returncode": None, "tail": f"timed out after {timeout:.0f} s"}
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def layer_times(device: torch.device, batch: int, width: int, repeats: int = 5) -> dict:
    """Median forward+backward seconds of the CSC layer (K = 2) and of the Conv2d it replaces, at the stem
    (3 → width, 32×32) and a block (width → width, 32×32) shape, with the reproduction presets' layer settings."""
    from ..models.factory import csc_layer_kwargs
    from ..nn.csc_layer import CSCLayer
    from ..profiling.timers import forward_backward_call, interleaved_medians
    from .config import preset_config
    options = csc_layer_kwargs(preset_config("sdnet18-cifar10", data_dir="-"))[0]
    calls = {}
    for name, c_in in (("stem", 3), ("block", width)):
        x = torch.randn(batch, c_in, 32, 32, device=device, requires_grad=True)
        layer = CSCLayer(c_in, width, 3, padding=1, **options).to(device).train()
        conv = torch.nn.Conv2d(c_in, width, 3, padding=1, bias=False).to(device)
        calls[f"{name}_csc"] = forward_backward_call(layer, (x,), list(layer.parameters()))
        calls[f"{name}_conv2d"] = forward_backward_call(conv, (x,), list(conv.parameters()))
    times = interleaved_medians(calls, repeats=repeats, device=device)
    return {**{k: round(v * 1e3, 3) for k, v in times.items()},
            "unit": "ms per forward+backward", "stem_ratio": times["stem_csc"] / times["stem_conv2d"],
            "block_ratio": times["block_csc"] / times["block_conv2d"]}


def throughput(model_name: str, device: torch.device, *, steps: int, width: int, batch: int, amp: str = "off",
               compile: bool = False, compile_backend: str = "inductor", warmup: int = 5) -> dict:
    """Images/s of ``steps`` training steps (after ``warmup``) of ``model_name`` on synthetic CIFAR-shaped data,
    through the training system's own step (:func:`cscnb.train.step.train_step`) and the reproduction settings."""
    from ..models.factory import build_model
    from .config import preset_config
    from .step import lr_factor, train_step
    preset = "resnet18-cifar10" if model_name == "resnet18" else "sdnet18-cifar10"
    config = preset_config(preset, data_dir="-", model=model_name, width=width, batch_size=batch, amp=amp,
                           compile=compile, epochs=1, channels_last=device.type == "cuda",
                           cudnn_benchmark=device.type == "cuda")

    class _Shape:  # what build_model needs to know of the data
        in_channels, n_classes, dim = 3, 10, 2
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = build_model(config, _Shape).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, warmup + steps))
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    step_model = torch.compile(model, backend=compile_backend) if compile else model
    x = torch.randn(batch, 3, 32, 32, device=device)
    if config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    start = time.perf_counter()
    for _ in range(warmup):
        loss, _ = train_step(step_model, x, y, optimizer, scheduler, scaler, config, device)
    float(loss)  # waits for the device
    warm_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        loss, _ = train_step(step_model, x, y, optimizer, scheduler, scaler, config, device)
    final = float(loss)
    seconds = time.perf_counter() - start
    return {"images_per_second": steps * batch / seconds, "seconds": seconds, "warmup_seconds": warm_seconds,
            "final_loss_finite": bool(torch.isfinite(torch.tensor(final))), "steps": steps, "batch": batch}


def _finite(value):
    """``value`` with every non-finite float replaced by None (the report is strict JSON)."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    for name in ("steps", "width", "batch_size", "warmup"):
        positive_int(getattr(args, name), name)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device here (torch {torch.__version__}, CUDA build {torch.version.cuda}); "
              "nothing to check. On a GPU machine run `make gpu-setup` first.")
        return 0
    begin = time.perf_counter()
    report = {"environment": _environment(device), "arguments": vars(args), "parts": {},
              "provenance": results.provenance(device=str(device), seed=0, world_size=1, start_time=results.now_iso())}
    print(f"gpu-check on {report['environment'].get('gpu', device)} (torch {torch.__version__}, "
          f"CUDA {torch.version.cuda})")

    def left() -> float:
        return args.budget - (time.perf_counter() - begin)

    def part(name: str, fn) -> None:
        if name in args.skip:
            report["parts"][name] = "skipped (--skip)"
        elif left() <= 0:
            report["parts"][name] = "skipped (time budget spent)"
        else:
            try:
                report["parts"][name] = fn()
            except Exception as err:  # a failing part is reported; the others still run
                report["parts"][name] = {"error": f"{type(err).__name__}: {err}"}
        print(f"  {name}: {json.dumps(report['parts'][name])[:400]}")

    part("tests", lambda: _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda",
                                "tests"], min(left(), 120)))
    part("layer", lambda: layer_times(device, args.batch_size, args.width))
    part("memory", lambda: _run([sys.executable, "benchmarks/bench_memory.py", "--device", str(device),
                                 "--batch", str(min(args.batch_size, 32)), "--channels", str(args.width),
                                 "--n-iters", "2", "10"], min(left(), 90)))
    part("ddp", lambda: _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                              "-m", "cscnb.train", "--preset", "smoke", "--epochs", "1", "--device", str(device),
                              "--no-progress",
                              "--out-dir", os.path.join(os.path.dirname(os.path.abspath(args.out)), "ddp-runs"),
                              "--run-name", f"ddp-{int(time.time())}"], min(left(), 120)))

    def training() -> dict:
        rows = {}
        variants = (("float32", "off", False), ("bf16", "bf16", False), ("bf16+compile", "bf16", True))
        for model_name in ("resnet18", "sdnet18", "sdnet18_all"):
            for label, amp, compiled in variants:
                key = f"{model_name} {label}"
                if left() <= 0:
                    rows[key] = "skipped (time budget spent)"
                    continue
                try:
                    rows[key] = throughput(model_name, device, steps=args.steps, width=args.width,
                                           batch=args.batch_size, amp=amp, compile=compiled,
                                           compile_backend=args.compile_backend, warmup=args.warmup)
                except Exception as err:
                    rows[key] = {"error": f"{type(err).__name__}: {err}"}
                value = rows[key]
                shown = f"{value['images_per_second']:.0f} images/s" if isinstance(value, dict) and \
                    "images_per_second" in value else value
                print(f"    {key:28s} {shown}")
        for label, _, _ in variants:
            base = rows.get(f"resnet18 {label}")
            for model_name in ("sdnet18", "sdnet18_all"):
                other = rows.get(f"{model_name} {label}")
                if isinstance(base, dict) and isinstance(other, dict) and "images_per_second" in base \
                        and "images_per_second" in other:
                    ratio = other["images_per_second"] / base["images_per_second"]
                    rows[f"ratio {model_name}/resnet18 {label}"] = ratio
                    print(f"    {model_name}/resnet18 ({label}): {ratio:.2f}")
        return rows

    part("training", training)
    report["seconds"] = round(time.perf_counter() - begin, 1)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    results.write_json(args.out, _finite(json.loads(json.dumps(report, default=str))))
    print(f"gpu-check: {report['seconds']} s; JSON written to {args.out}")
    # pytest's exit status 5 means no CUDA-marked test was collected
    failed = [name for name, value in report["parts"].items() if isinstance(value, dict)
              and ("error" in value or ("returncode" in value and value["returncode"] not in (0, 5)))]
    if failed:
        print(f"gpu-check: FAILED parts: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
