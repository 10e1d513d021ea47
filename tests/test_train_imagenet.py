"""``python -m cscnb.train`` on ImageNet-style folders: the trainer reads them through the authors' data path.

A tiny generated folder (3 classes × 4 images of varied sizes, JPEG and PNG) stands for ImageNet. The
training batches must be the loaders' random resized crops (recomputed here image by image from the
per-image seed), the evaluation batches the resize + centre crop; a run through the command-line entry
must finish, and a run interrupted inside an epoch must resume to the same weights as a straight one.
"""
import os

import pytest
import torch

from cscnb.data.imagenet import RandomResizedCropFlip, ResizeCenterCrop, image_rng
from cscnb.train import load_run, main, train
from cscnb.train import loop as loop_module
from cscnb.train.config import preset_config
from cscnb.train.data import IMAGENET_MEAN, IMAGENET_STD, FolderData, build_data

SIZES = [(40, 30), (33, 47), (64, 48), (29, 29)]  # (width, height): landscape, portrait, square


def _folder(tmp_path):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        for label in range(3):
            os.makedirs(root / split / f"n0{label}")
            for k, (w, h) in enumerate(SIZES):
                pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                pixels[..., label] //= 4  # a class cue the tiny model may pick up
                Image.fromarray(pixels).save(root / split / f"n0{label}" / f"{k}.{'png' if k % 2 else 'JPEG'}")
    return str(root)


def _config(tmp_path, root, name="run", **overrides):
    settings = dict(data_dir=root, out_dir=str(tmp_path / "runs"), run_name=name, progress=False, epochs=2, width=4,
                    batch_size=4, image_size=16, workers=0, threads=1, device="cpu", dtype="float64",
                    channels_last=False, cudnn_benchmark=False)
    return preset_config("sdnet18-imagenet", **{**settings, **overrides})


def _image(path):
    from PIL import Image
    with Image.open(path) as image:
        return image.convert("RGB")


def test_trainer_batches_are_random_resized_crops_and_evaluation_is_resize_center_crop(tmp_path):
    root = _folder(tmp_path)
    config = _config(tmp_path, root, image_size=16)
    data = build_data(config, torch.device("cpu"))
    assert isinstance(data, FolderData) and data.n_classes == 3 and data.n_train == 12
    assert data.steps_per_epoch(4) == 3 and not data.has_validation
    train_set, val_set = data.loaders.train.dataset, data.loaders.val.dataset
    assert isinstance(train_set.transform, RandomResizedCropFlip) and train_set.transform.size == 16
    assert isinstance(val_set.transform, ResizeCenterCrop)
    assert (val_set.transform.resize, val_set.transform.size) == (round(16 * 8 / 7), 16)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1) * 255
    sampler = data.loaders.train_sampler
    for epoch in (0, 1):
        batches = list(data.train_batches(epoch, 4))
        sampler.set_epoch(epoch)
        keys = [key for batch in sampler for key in batch]
        assert len(batches) == 3 and all(x.shape == (4, 3, 16, 16) and x.dtype == torch.float64 for x, _ in batches)
        x = torch.cat([x for x, _ in batches])
        # recomputed image by image: the documented random resized crop + flip of (seed, epoch, index)
        expected = torch.stack([RandomResizedCropFlip(16)(_image(train_set.samples[i][0]), image_rng(0, e, i))
                                for e, i in keys])
        assert torch.allclose(x, (expected.double() - mean) / std, atol=1e-12)
        assert torch.cat([y for _, y in batches]).tolist() == [train_set.samples[i][1] for _, i in keys]
    # resuming inside an epoch: the batches after start_step are the uninterrupted epoch's
    full, tail = list(data.train_batches(1, 4)), list(data.train_batches(1, 4, start_step=1))
    assert len(tail) == 2
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(full[1:], tail, strict=True))
    # evaluation: the resize + centre crop of every val image once, in order
    x = torch.cat([x for x, _ in data.test_batches(256)])
    expected = torch.stack([ResizeCenterCrop(18, 16)(_image(path)) for path, _ in val_set.samples])
    assert torch.allclose(x, (expected.double() - mean) / std, atol=1e-12)
    with pytest.raises(ValueError, match="validation"):
        next(data.test_batches(4, split="val"))
    # another batch or process split than the run's gets its own loader over the same images
    halves = [list(data.train_batches(0, 4, rank, 2)) for rank in (0, 1)]
    whole = list(data.train_batches(0, 4))
    assert all(torch.equal(torch.cat([a[0], b[0]]), w[0]) for a, b, w in zip(*halves, whole, strict=True))


def test_computed_normalization_and_no_augmentation(tmp_path):
    root = _folder(tmp_path)
    data = build_data(_config(tmp_path, root, normalize="computed", augment=False), torch.device("cpu"))
    assert isinstance(data.loaders.train.dataset.transform, ResizeCenterCrop)
    images = torch.stack([ResizeCenterCrop(18, 16)(_image(p)) for p, _ in data.loaders.train.dataset.samples])
    pixels = images.double().transpose(0, 1).reshape(3, -1)
    assert torch.allclose(data.mean.view(3), pixels.mean(1)) and torch.allclose(data.std.view(3), pixels.std(1))
    x = torch.cat([x for x, _ in data.train_batches(0, 4)])
    assert abs(float(x.mean())) < 1e-9 and abs(float(x.std()) - 1) < 1e-2  # all 12 images, standardized


def test_imagenet_run_through_the_command_line(tmp_path):
    root = _folder(tmp_path)
    assert main(["--preset", "sdnet18-imagenet", "--data-dir", root, "--out-dir", str(tmp_path / "runs"),
                 "--run-name", "cli", "--width", "4", "--image-size", "32", "--batch-size", "4", "--epochs", "1",
                 "--device", "cpu", "--workers", "1", "--threads", "1", "--channels-last", "false",
                 "--no-progress"]) == 0
    run = load_run(str(tmp_path / "runs" / "cli"))
    assert run.status == "finished" and run.summary["epochs"] == 1
    assert run.provenance["steps_per_epoch"] == 3 and 0 <= run.summary["final_test_accuracy"] <= 1
    assert torch.isfinite(torch.tensor(run.summary["final_train_loss"]))


def test_resume_after_an_interrupted_epoch_reaches_the_same_weights(tmp_path, monkeypatch):
    root = _folder(tmp_path)
    straight = train(_config(tmp_path, root, "straight"))
    real, calls = loop_module.train_step, {"n": 0}

    def interrupted(*args, **kwargs):  # stands for a kill at step 2 of epoch 2 (after the epoch-1 checkpoint)
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(loop_module, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(_config(tmp_path, root, "killed"))
    monkeypatch.undo()
    killed = str(tmp_path / "runs" / "killed")
    assert load_run(killed).status == "unfinished"
    assert torch.load(os.path.join(killed, "checkpoint.pt"), weights_only=True)["epoch"] == 1
    resumed = train(_config(tmp_path, root, "killed", resume=True, workers=1))  # workers may change on resume
    assert load_run(resumed).provenance["resumed_at_epochs"] == [1]
    a = torch.load(os.path.join(resumed, "checkpoint.pt"), weights_only=True)["model"]
    b = torch.load(os.path.join(straight, "checkpoint.pt"), weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert load_run(resumed).summary["final_test_loss"] == load_run(straight).summary["final_test_loss"]
