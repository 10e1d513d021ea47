"""Ready for the GPU: host syncs per training step, the GPU self-check's CPU dry run, bitwise resume of SDNet,
and (on a CUDA machine only, marker ``cuda``) the CUDA paths of the trainer."""
import collections
import contextlib
import json

import pytest
import torch

from cscnb.models import resnet
from cscnb.models.factory import csc_layer_kwargs
from cscnb.train import gpu_check, load_run, train
from cscnb.train import loop as loop_module
from cscnb.train.config import preset_config
from cscnb.train.step import lr_factor, train_step

HOST_READS = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist")


@contextlib.contextmanager
def counting_host_reads():
    """Count every Tensor → Python read (each one a device sync on a GPU) while the context is open."""
    counts = collections.Counter()
    originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def counted(name, original):
        def read(self, *args, **kwargs):
            counts[name] += 1
            return original(self, *args, **kwargs)
        return read
    for name, original in originals.items():
        setattr(torch.Tensor, name, counted(name, original))
    try:
        yield counts
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def host_reads_per_step(model_name: str, device: str = "cpu") -> collections.Counter:
    """Host reads in one training step (after a first step) of ``model_name`` at width 8 on 32×32 inputs,
    through the trainer's own step with the reproduction presets' settings."""
    preset = "resnet18-cifar10" if model_name == "resnet18" else "sdnet18-cifar10"
    config = preset_config(preset, data_dir="-", model=model_name, width=8, batch_size=8, channels_last=False)
    torch.manual_seed(0)
    kwargs = {} if model_name == "resnet18" else dict(csc_options=csc_layer_kwargs(config)[0])
    device = torch.device(device)
    model = getattr(resnet, model_name)(width=8, num_classes=10, **kwargs).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, 10))
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    x, y = torch.randn(8, 3, 32, 32, device=device), torch.randint(0, 10, (8,), device=device)
    train_step(model, x, y, optimizer, scheduler, scaler, config, device)  # first step: cold starts, state
    with counting_host_reads() as counts:
        train_step(model, x, y, optimizer, scheduler, scaler, config, device)
    return counts


def test_host_syncs_per_training_step(device="cpu"):
    counts = {name: host_reads_per_step(name, device) for name in ("resnet18", "sdnet18", "sdnet18_all")}
    totals = {name: sum(c.values()) for name, c in counts.items()}
    # the loop reads nothing per step (losses are read every log_every steps); no model may read more than ResNet-18
    assert totals["resnet18"] == 0, counts
    assert all(total <= totals["resnet18"] for total in totals.values()), counts


def test_gpu_check_without_cuda_says_so_and_exits_0(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the full check would run")
    assert gpu_check.main([]) == 0
    assert "no CUDA device here" in capsys.readouterr().out


def test_gpu_check_dry_run_on_cpu(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    code = gpu_check.main(["--device", "cpu", "--steps", "2", "--width", "4", "--batch-size", "8",
                           "--compile-backend", "eager", "--warmup", "1", "--skip", "tests", "memory",
                           "--out", str(out)])
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert code == 0, printed
    parts = report["parts"]
    assert parts["ddp"]["returncode"] == 0 and parts["tests"] == "skipped (--skip)"
    assert parts["layer"]["stem_csc"] > 0 and parts["layer"]["block_ratio"] > 0
    for model in ("resnet18", "sdnet18", "sdnet18_all"):
        for variant in ("float32", "bf16", "bf16+compile"):
            row = parts["training"][f"{model} {variant}"]
            assert row["images_per_second"] > 0 and row["final_loss_finite"] and row["steps"] == 2
    assert "ratio sdnet18_all/resnet18 bf16" in parts["training"] and "sdnet18/resnet18 (float32)" in printed
    assert report["provenance"]["git_commit"] and report["environment"]["torch"] == torch.__version__


def test_resume_of_sdnet_reaches_the_straight_run_bitwise(tmp_path, monkeypatch):
    # SDNet-18 on the digits, float64, deterministic algorithms: killed after epoch 1's checkpoint (with its
    # test evaluation in eval mode), resumed, against the uninterrupted run: every weight and buffer bit-equal
    overrides = dict(width=8, epochs=2, dtype="float64", deterministic=True, out_dir=str(tmp_path), progress=False)
    real_epoch = loop_module._epoch

    def killed_in_epoch_2(run, *args):
        if args[6] == 1:  # the epoch index
            raise KeyboardInterrupt
        return real_epoch(run, *args)
    monkeypatch.setattr(loop_module, "_epoch", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(preset_config("digits-sdnet", run_name="killed", **overrides))
    monkeypatch.undo()
    resumed = train(preset_config("digits-sdnet", run_name="killed", resume=True, **overrides))
    straight = train(preset_config("digits-sdnet", run_name="straight", **overrides))
    a = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    differing = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not differing, differing
    assert load_run(resumed).column("train_loss") == load_run(straight).column("train_loss")


@pytest.mark.cuda
def test_cuda_training_fp16_scaler_and_sync_batch_norm(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    config = preset_config("digits-cnn", width=8, epochs=1, device="cuda", amp="fp16", channels_last=True,
                           cudnn_benchmark=True, out_dir=str(tmp_path), run_name="fp16", progress=False)
    run = load_run(train(config))
    assert run.status == "finished" and run.summary["final_test_accuracy"] > 0.1
    state = torch.load(tmp_path / "fp16" / "checkpoint.pt", weights_only=True)
    assert state["scaler"]["scale"] > 0  # the fp16 gradient scaler's state is in the checkpoint
    from cscnb.train.distributed import sync_batch_norm
    model, n = sync_batch_norm(resnet.resnet18(width=8).cuda(), torch.device("cuda"))
    assert n == 20 and any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())


@pytest.mark.cuda
def test_cuda_host_syncs_per_training_step():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    test_host_syncs_per_training_step("cuda")
