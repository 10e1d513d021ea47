"""python -m cscnb.train: presets and CLI, run folders, checkpoint/resume after SIGKILL, DDP on gloo.

Failures, resume rules, the step log and the schedule are in test_train_runs.py; host syncs, the GPU
self-check and bitwise resume of SDNet in test_train_gpu.py.
"""
import dataclasses
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from cscnb.train import run_directory, select_device, train
from cscnb.train.checkpoint import atomic_torch_save, rng_state, set_rng_state
from cscnb.train.config import PRESET_NOTES, PRESETS, TrainConfig, build_parser, config_from_argv, preset_config
from cscnb.train.presets import REPRODUCTION_PRESETS
from cscnb.train.results import load_run, load_runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env():
    # one thread per process: the tiny models gain nothing from more, and the CI machine is shared
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}


def test_every_preset_builds_and_the_cli_overrides_it():
    for name in PRESETS:
        overrides = {"data_dir": "/nowhere"} if PRESETS[name]["dataset"] in ("cifar10", "cifar100", "imagenet") else {}
        assert preset_config(name, **overrides).preset == name
    # the SDNet authors' CIFAR recipe, as their code sets it (optimizer, per-iteration cosine, layer, stem)
    for name in ("sdnet18-cifar10", "sdnet18-cifar100", "sdnet18-all-cifar10", "sdnet18-all-cifar100"):
        gpu = preset_config(name, data_dir="/d")
        assert (gpu.lr, gpu.momentum, gpu.nesterov, gpu.weight_decay, gpu.batch_size, gpu.epochs, gpu.schedule,
                gpu.schedule_unit, gpu.augment, gpu.normalize, gpu.amp) == \
            (0.1, 0.9, True, 5e-4, 128, 220, "cosine", "iteration", True, "recipe", "off")
        assert (gpu.csc_lam, gpu.csc_mu, gpu.csc_nonneg, gpu.csc_n_iter, gpu.csc_atom_norm, gpu.csc_power_iters,
                gpu.csc_power_tol, gpu.csc_step_factor, gpu.stem_relu) == \
            (0.1, 0.0, True, 2, "project", 50, 1e-5, 0.9, "off")
        assert (gpu.warmup_epochs, gpu.label_smoothing) == (0.0, 0.0)
    imagenet = preset_config("sdnet18-imagenet", data_dir="/d")
    assert (imagenet.nesterov, imagenet.weight_decay, imagenet.batch_size, imagenet.schedule, imagenet.milestones,
            imagenet.schedule_unit, imagenet.epochs, imagenet.stem_relu) == \
        (False, 1e-4, 512, "step", "30,60,90", "epoch", 100, "off")
    assert preset_config("sdnet18-all-imagenet", data_dir="/d").batch_size == 256
    assert preset_config("resnet18-cifar10", data_dir="/d").stem_relu == "auto"  # ResNet keeps its stem ReLU
    assert set(PRESET_NOTES) == set(PRESETS) and all("Differs" in PRESET_NOTES[n] for n in REPRODUCTION_PRESETS)
    config = config_from_argv(["--preset", "digits-cnn", "--epochs", "3", "--lr", "0.2", "--nesterov", "false",
                               "--no-progress", "--augment"])
    assert config.augment is True
    assert (config.epochs, config.lr, config.nesterov, config.progress, config.model) == (3, 0.2, False, False,
                                                                                          "resnet18")
    help_text = build_parser().format_help()
    fields = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "preset"]
    assert all("--" + name.replace("_", "-") in help_text for name in fields)
    with pytest.raises(ValueError, match="dataset"):
        TrainConfig(dataset="svhn")
    with pytest.raises(ValueError, match="data-dir"):
        preset_config("sdnet18-cifar10")
    with pytest.raises(ValueError, match="preset"):
        preset_config("nope")
    with pytest.raises(SystemExit):
        config_from_argv(["--nesterov", "maybe"])


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            select_device("cuda")


def test_rng_state_round_trip_and_atomic_save(tmp_path):
    state = rng_state()
    draws = (torch.rand(3), np.random.rand(3), random.random())
    atomic_torch_save({"rng": state}, str(tmp_path / "s.pt"))
    assert os.listdir(tmp_path) == ["s.pt"]  # no temporary file left behind
    set_rng_state(torch.load(tmp_path / "s.pt", weights_only=True)["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1]) and draws[2] == again[2]


def _smoke(tmp_path, name, **overrides):
    return preset_config("smoke", out_dir=str(tmp_path), run_name=name, progress=False, **overrides)


def test_smoke_run_writes_a_results_folder(tmp_path):
    path = train(_smoke(tmp_path, "a"))
    assert sorted(os.listdir(path)) == ["checkpoint.pt", "config.json", "metrics.csv", "provenance.json",
                                       "steps.jsonl", "summary.json"]
    run = load_run(path)
    assert run.config["preset"] == "smoke" and run.provenance["seed"] == 0 and run.provenance["device"] == "cpu"
    assert run.provenance["wall_seconds"] > 0 and run.provenance["end_time"] is not None
    assert len(run.provenance["git_commit"]) in (7, 40) or run.provenance["git_commit"] == "unknown"
    assert run.column("epoch") == [1, 2] and run.summary["epochs"] == 2
    assert all(0 <= a <= 1 for a in run.column("test_accuracy")) and run.column("lr")[0] == 0.1
    assert run.summary["final_test_accuracy"] == run.column("test_accuracy")[-1] and run.status == "finished"
    assert (run.provenance["global_batch"], run.provenance["per_process_batch"]) == (64, 64)
    assert [r.name for r in load_runs(tmp_path)] == ["a"]
    with pytest.raises(FileNotFoundError, match="not a folder"):
        train(preset_config("sdnet18-cifar10", data_dir=str(tmp_path / "none"), out_dir=str(tmp_path), run_name="c"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="data_batch_1.bin"):
        train(preset_config("sdnet18-cifar10", data_dir=str(tmp_path / "empty"), out_dir=str(tmp_path),
                            run_name="c"))
    assert not (tmp_path / "c").exists()  # a failed start leaves no run folder behind
    with pytest.raises(FileExistsError, match="--resume"):
        train(_smoke(tmp_path, "a"))  # never overwrite a run
    with pytest.raises(FileExistsError, match="no checkpoint"):
        run_directory(_smoke(tmp_path, "b", resume=True), time.time())


def test_sdnet_and_mnist1d_paths_train(tmp_path):
    run = load_run(train(preset_config("digits-sdnet", out_dir=str(tmp_path), run_name="s", progress=False,
                                       epochs=1, width=4)))
    assert run.summary["epochs"] == 1 and np.isfinite(run.summary["final_train_loss"])
    run = load_run(train(preset_config("mnist1d-cnn", out_dir=str(tmp_path), run_name="m", progress=False,
                                       epochs=1, num_samples=400, width=4)))
    assert run.summary["epochs"] == 1 and np.isfinite(run.summary["final_train_loss"])


def test_imagenet_folder_path_trains(tmp_path):
    from PIL import Image
    for split in ("train", "val"):
        for label, colour in enumerate([(220, 20, 20), (20, 20, 220)]):
            os.makedirs(tmp_path / "img" / split / f"c{label}")
            for k in range(4):
                Image.new("RGB", (20, 18), colour).save(tmp_path / "img" / split / f"c{label}" / f"{k}.JPEG")
    config = preset_config("sdnet18-imagenet", data_dir=str(tmp_path / "img"), out_dir=str(tmp_path), run_name="i",
                           progress=False, epochs=1, width=4, batch_size=4, image_size=14, workers=0, amp="off",
                           model="resnet18", threads=1)
    run = load_run(train(config))
    assert run.summary["epochs"] == 1 and 0 <= run.summary["final_test_accuracy"] <= 1


def test_resume_after_sigkill_reaches_the_same_weights(tmp_path):
    overrides = dict(dtype="float64", epochs=4)
    command = [sys.executable, "-m", "cscnb.train", "--preset", "smoke", "--dtype", "float64", "--epochs", "4",
               "--out-dir", str(tmp_path), "--run-name", "killed", "--no-progress"]
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    stderr = process.communicate()[1].decode()
    assert checkpoint.exists(), stderr
    done = torch.load(checkpoint, weights_only=True)["epoch"]
    assert 1 <= done < 4 and not (tmp_path / "killed" / "summary.json").exists()  # truly interrupted
    resumed = train(_smoke(tmp_path, "killed", resume=True, **overrides))
    straight = train(_smoke(tmp_path, "straight", **overrides))
    a = torch.load(os.path.join(resumed, "checkpoint.pt"), weights_only=True)["model"]
    b = torch.load(os.path.join(straight, "checkpoint.pt"), weights_only=True)["model"]
    assert a.keys() == b.keys() and all(a[k].dtype == torch.float64 and torch.equal(a[k], b[k]) for k in a)
    prov = load_run(resumed).provenance
    assert prov["resumed_at_epochs"] == [done] and prov["wall_seconds"] > 0
    curve_resumed, curve_straight = load_run(resumed).column("train_loss"), load_run(straight).column("train_loss")
    assert len(curve_resumed) == 4 and curve_resumed == curve_straight


def test_augmented_global_batches_do_not_depend_on_the_process_count():
    # the crops and flips of a global batch come from one (seed, epoch) generator whatever the number of processes:
    # the ranks' slices put together are the one-process batch, which is recomputed here as the documented recipe
    # (the epoch's permutation, then random_crop_flip of each global batch in step order with one generator)
    from cscnb.data.cifar import random_crop_flip
    from cscnb.train.data import build_data, epoch_generator
    data = build_data(preset_config("digits-cnn", augment=True, dtype="float64"), torch.device("cpu"))
    assert data.augment and data.padding == 4
    for epoch in (0, 3):
        whole = list(data.train_batches(epoch, 64))
        assert len(whole) == data.n_train // 64 == 21
        perm = torch.randperm(data.n_train, generator=epoch_generator(0, epoch))
        generator = epoch_generator(0, epoch, 1)
        for step, (x, y) in enumerate(whole):
            index = perm[step * 64:(step + 1) * 64]
            expected = random_crop_flip(data.x_train[index], generator, padding=4)
            assert torch.equal(y, data.y_train[index])
            assert torch.allclose(x, (expected - data.mean) / data.std, rtol=0, atol=1e-12)
        plain = (data.x_train[perm[:64]] - data.mean) / data.std
        assert float((whole[0][0] - plain).abs().max()) > 1  # the augmentation changes the images
        for world in (2, 4):
            shares = [list(data.train_batches(epoch, 64, rank, world)) for rank in range(world)]
            for step, parts in enumerate(zip(*shares, strict=True)):
                assert all(len(y) == 64 // world for _, y in parts)
                assert torch.equal(torch.cat([x for x, _ in parts]), whole[step][0])
                assert torch.equal(torch.cat([y for _, y in parts]), whole[step][1])
        # started at step 5 (resuming inside an epoch): the same batches as the uninterrupted epoch from there on
        for rank in (0, 1):
            full = list(data.train_batches(epoch, 64, rank, 2))
            tail = list(data.train_batches(epoch, 64, rank, 2, start_step=5))
            assert len(tail) == 16
            assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(tail, full[5:], strict=True))


@pytest.mark.parametrize("augment", [False, True])
def test_two_gloo_processes_match_one_process_with_batch_norm(tmp_path, augment):
    # ResNet-18 (batch norm everywhere): with sync_bn (the default) each of the two processes normalizes with the
    # statistics of the global batch, so losses, accuracies, weights and running statistics equal one process's;
    # with augmentation too, since the crops and flips of a global batch do not depend on the number of processes
    args = ["--preset", "digits-cnn", "--width", "4", "--epochs", "2", "--dtype", "float64", "--out-dir",
            str(tmp_path), "--no-progress", *(["--augment"] if augment else [])]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "cscnb.train", *args, "--run-name", "ddp"]
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    single = load_run(train(preset_config("digits-cnn", width=4, epochs=2, dtype="float64", out_dir=str(tmp_path),
                                          run_name="single", progress=False, augment=augment)))  # meanwhile
    stderr = process.communicate(timeout=300)[1]
    assert process.returncode == 0, stderr[-3000:]
    ddp = load_run(str(tmp_path / "ddp"))
    assert ddp.provenance["world_size"] == 2 and single.provenance["world_size"] == 1
    assert (ddp.provenance["per_process_batch"], ddp.provenance["sync_batch_norm_layers"]) == (32, 20)
    for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "test_top5"):
        torch.testing.assert_close(torch.tensor(ddp.column(key)), torch.tensor(single.column(key)),
                                   rtol=1e-9, atol=1e-12)
    a = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "single" / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and any("running_var" in key for key in a)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-9, atol=1e-12)
