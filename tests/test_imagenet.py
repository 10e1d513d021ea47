"""The ImageNet data path: the authors' training and evaluation transforms and the seeded loaders.

Geometry is checked against an independent computation: on a gradient image (red encodes the column,
green the row) every output pixel must show the source coordinate that the documented transform maps it
to, computed here from the crop box and the scale factors alone.
"""
import math
import os

import numpy as np
import pytest
import torch

from cscnb.data.imagenet import (
    EpochBatchSampler,
    ImageFolder,
    RandomResizedCropFlip,
    ResizeCenterCrop,
    build_imagenet_loaders,
    image_rng,
    random_resized_crop_box,
    resize_shorter_side,
)


def _gradient(width, height):
    from PIL import Image
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, np.full_like(x, 128)], -1).round().astype(np.uint8))


def _source_coordinate(out_index, offset, scale):
    """Pixel-centre mapping of a resize: output pixel k samples the source at (k + ½)·scale − ½ (+ offset)."""
    return offset + (out_index + 0.5) * scale - 0.5


def test_resize_center_crop_geometry_on_a_gradient():
    width, height = 500, 375
    out = ResizeCenterCrop(256, 224)(_gradient(width, height)).double()
    assert out.shape == (3, 224, 224) and resize_shorter_side(width, height, 256) == (341, 256)
    top, left = round((256 - 224) / 2), round((341 - 224) / 2)          # 16, 58
    k = torch.arange(224, dtype=torch.float64)
    src_x = _source_coordinate(k + left, 0, width / 341)
    src_y = _source_coordinate(k + top, 0, height / 256)
    expected_r = 255 * src_x / (width - 1)
    expected_g = 255 * src_y / (height - 1)
    assert float((out[0].mean(0) - expected_r).abs().max()) < 1.5
    assert float((out[1].mean(1) - expected_g).abs().max()) < 1.5


def test_random_resized_crop_boxes_obey_scale_and_ratio():
    width, height, fallback = 500, 375, 0
    for index in range(300):
        left, top, w, h = random_resized_crop_box(width, height, image_rng(0, 0, index))
        assert left >= 0 and left + w <= width and top >= 0 and top + h <= height
        # rounding of w and h moves the area and the ratio by at most ~1/min(w, h) relatively
        slack = 3 / min(w, h)
        assert 0.08 * (1 - slack) <= w * h / (width * height) <= 1 + slack
        assert 3 / 4 * (1 - slack) <= w / h <= 4 / 3 * (1 + slack)
        fallback += (left, top, w, h) == (0, 0, width, height)
    assert fallback < 30  # the full-image fallback is rare for a 4:3 image
    # an image too elongated for any window of ratio <= 4/3 falls back to the central window of ratio 4/3
    assert random_resized_crop_box(1000, 10, image_rng(0, 0, 0)) == ((1000 - 13) // 2, 0, 13, 10)
    assert random_resized_crop_box(10, 1000, image_rng(0, 0, 0)) == (0, (1000 - 13) // 2, 10, 13)


def test_random_resized_crop_output_samples_its_box_and_flips_half_the_time():
    width, height = 500, 375
    image = _gradient(width, height)
    transform = RandomResizedCropFlip(64)
    flips = 0
    for index in range(40):
        out = transform(image, image_rng(3, 1, index)).double()
        rng = image_rng(3, 1, index)
        left, top, w, h = random_resized_crop_box(width, height, rng)
        flipped = rng.random() < 0.5
        k = torch.arange(64, dtype=torch.float64)
        expected_r = 255 * _source_coordinate(k, left, w / 64) / (width - 1)
        expected_g = 255 * _source_coordinate(k, top, h / 64) / (height - 1)
        red = out[0].mean(0).flip(0) if flipped else out[0].mean(0)
        assert float((red - expected_r).abs().max()) < 2.0
        assert float((out[1].mean(1) - expected_g).abs().max()) < 2.0
        flips += flipped
    assert 10 <= flips <= 30


def _write_folder(root, classes=("a", "b", "c"), per_class=4, split_classes=None):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in (split_classes or {}).get(split, classes):
            os.makedirs(root / split / name)
            for k in range(per_class):
                pixels = rng.integers(0, 256, size=(30 + 3 * k, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{k}.JPEG", quality=90)
    return root


def _batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_loaders_are_seeded_independent_of_workers_and_split_over_processes(tmp_path):
    root = _write_folder(tmp_path)
    one = build_imagenet_loaders(root, 4, 0, image_size=16, resize=20, seed=7)
    two = build_imagenet_loaders(root, 4, 2, image_size=16, resize=20, seed=7, prefetch_factor=2)
    assert two.train.persistent_workers and one.classes == ["a", "b", "c"]
    for epoch in (0, 1):
        one.set_epoch(epoch)
        two.set_epoch(epoch)
        a, b = _batches(one.train), _batches(two.train)
        assert len(a) == 12 // 4 and all(torch.equal(x, u) and torch.equal(y, v)
                                         for (x, y), (u, v) in zip(a, b, strict=True))
        assert a[0][0].shape == (4, 3, 16, 16) and a[0][0].dtype == torch.uint8
    one.set_epoch(0)
    epoch0 = _batches(one.train)
    one.set_epoch(1)
    assert not all(torch.equal(x, u) for (x, _), (u, _) in zip(epoch0, _batches(one.train), strict=True))
    # two processes: rank r loads the r-th half of every global batch, the very same images
    halves = [build_imagenet_loaders(root, 4, 0, image_size=16, resize=20, seed=7, rank=r, world=2) for r in (0, 1)]
    for half in halves:
        half.set_epoch(0)
    for (x, y), (x0, y0), (x1, y1) in zip(epoch0, *(_batches(h.train) for h in halves), strict=True):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    # evaluation: every validation image once, deterministic, the classes of train
    val = torch.cat([y for _, y in _batches(one.val)])
    assert sorted(val.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    assert all(torch.equal(x, u) for (x, _), (u, _) in zip(_batches(one.val), _batches(two.val), strict=True))


def test_training_order_is_the_trainers_epoch_permutation(tmp_path):
    from cscnb.train.data import epoch_generator
    sampler = EpochBatchSampler(37, 8, seed=5)
    sampler.set_epoch(3)
    keys = [key for batch in sampler for key in batch]
    expected = torch.randperm(37, generator=epoch_generator(5, 3))[:32].tolist()
    assert [i for _, i in keys] == expected and {e for e, _ in keys} == {3}
    sampler.set_epoch(3, start_step=2)
    assert len(sampler) == 2 and [i for b in sampler for _, i in b] == expected[16:]


def test_bad_arguments_and_mismatched_classes(tmp_path):
    root = _write_folder(tmp_path, split_classes={"train": ("a", "b"), "val": ("a", "c")})
    with pytest.raises(ValueError, match=r"missing \['b'\], extra \['c'\]"):
        build_imagenet_loaders(root, 4, 0)
    with pytest.raises(ValueError, match="divisible"):
        build_imagenet_loaders(root, 5, 0, world=2)
    with pytest.raises(ValueError, match="workers"):
        build_imagenet_loaders(root, 4, -1)
    with pytest.raises(TypeError, match="scale"):
        RandomResizedCropFlip(224, scale=0.5)
    with pytest.raises(ValueError, match="ratio"):
        RandomResizedCropFlip(224, ratio=(2.0, 1.0))
    with pytest.raises(ValueError, match="size"):
        ResizeCenterCrop(200, 224)
    with pytest.raises(ValueError, match="rank"):
        EpochBatchSampler(10, 4, rank=2, world=2)
    with pytest.raises(TypeError, match="transform"):
        ImageFolder(root, "train", transform=3)
    with pytest.raises(ValueError, match="missing"):  # val is checked against train by default, too
        ImageFolder(root, "val", resize=8)
    assert ImageFolder(root, "val", classes=["a", "c"]).classes == ["a", "c"]
    assert math.isclose(sum(1 for _ in ImageFolder(root, "train").samples), 8)
