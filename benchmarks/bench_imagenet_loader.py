"""Decoded images per second per core of the ImageNet loaders (cscnb.data.imagenet), on synthetic JPEGs.

Prints one JSON object. Never run in CI (about a minute). Usage, from the repository root:

    .venv/bin/python benchmarks/bench_imagenet_loader.py [--images 500] [--workers 0 1 2] [--repeats 3]

Writes IMAGES synthetic 500x375 RGB JPEGs (quality 90, ImageNet's typical size; smooth random fields plus
pixel noise, so that the files are about as large as natural photographs of that size) into a temporary
folder laid out as train/<class>/ and val/<class>/ (10 classes, the same files in both), then times one
full pass of build_imagenet_loaders' training loader (decode, RandomResizedCrop(224), flip, collate to
uint8) and of its evaluation loader (decode, Resize(256), CenterCrop(224)) for each worker count.
"per core" divides by max(workers, 1): workers = 0 decodes in the main process on one core. The first
pass (worker start-up, page cache) is untimed; the median of the timed passes is reported.
"""
from __future__ import annotations

import argparse
import os
import sys


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="synthetic JPEGs written (split over 10 classes)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts to time")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per setting (median reported)")
    parser.add_argument("--batch-size", type=int, default=50)
    return parser.parse_args()


ARGS = _parse()
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = "1"

import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import PIL  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _provenance import provenance  # noqa: E402

from cscnb.data.imagenet import build_imagenet_loaders  # noqa: E402

WIDTH, HEIGHT, CLASSES = 500, 375, 10


def write_jpegs(root: Path, n: int) -> float:
    """n synthetic JPEGs in train/ (and hard links in val/); returns the mean file size in kB."""
    rng = np.random.default_rng(0)
    sizes = []
    for k in range(n):
        coarse = rng.uniform(0, 255, size=(12, 16, 3)).astype(np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((WIDTH, HEIGHT), Image.BICUBIC), dtype=np.float64)
        pixels = np.clip(smooth + rng.normal(0, 12, size=smooth.shape), 0, 255).astype(np.uint8)
        name = f"c{k % CLASSES}"
        for split in ("train", "val"):
            (root / split / name).mkdir(parents=True, exist_ok=True)
        path = root / "train" / name / f"{k}.JPEG"
        Image.fromarray(pixels).save(path, quality=90)
        os.link(path, root / "val" / name / f"{k}.JPEG")
        sizes.append(path.stat().st_size / 1e3)
    return statistics.fmean(sizes)


def time_pass(loader) -> tuple:
    start, count = time.perf_counter(), 0
    for x, _ in loader:
        count += x.shape[0]
    return time.perf_counter() - start, count


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory(prefix="cscnb-bench-imagenet-") as folder:
        mean_kb = write_jpegs(Path(folder), ARGS.images)
        for workers in ARGS.workers:
            loaders = build_imagenet_loaders(folder, ARGS.batch_size, workers, seed=0, prefetch_factor=4)
            for name, loader in (("train", loaders.train), ("eval", loaders.val)):
                timings = []
                for repeat in range(ARGS.repeats + 1):
                    loaders.set_epoch(repeat)
                    seconds, count = time_pass(loader)
                    if repeat:  # the first pass starts the workers and fills the page cache
                        timings.append(count / seconds)
                rate = statistics.median(timings)
                results[f"{name}_workers{workers}"] = {
                    "transform": "RandomResizedCrop(224)+flip" if name == "train" else "Resize(256)+CenterCrop(224)",
                    "workers": workers, "images_per_pass": count, "images_per_second": rate,
                    "images_per_second_per_core": rate / max(workers, 1), "all_passes": timings}
            del loaders
    print(json.dumps({
        "benchmark": "bench_imagenet_loader", "images": ARGS.images, "image_size": [WIDTH, HEIGHT],
        "mean_jpeg_kB": mean_kb, "batch_size": ARGS.batch_size, "results": results,
        "provenance": {**provenance(1), "pillow": PIL.__version__}}, indent=2))


if __name__ == "__main__":
    main()
