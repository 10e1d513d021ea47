"""python -m cscnb.train under faults and rules: non-finite loss, argument errors, resume rules, scaler state,
the per-step log, top-5, validation split, TensorBoard, the learning-rate schedule, atomic rewrites."""
import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cscnb.train import TrainingFailed, load_run, load_steps, main, results, train
from cscnb.train import loop as loop_module
from cscnb.train import step as step_module
from cscnb.train.checkpoint import load_checkpoint, save_checkpoint
from cscnb.train.config import preset_config
from cscnb.train.step import lr_factor

STEPS = 21  # optimizer steps per epoch of the digits presets: 1347 training images // 64


def _smoke(tmp_path, name, **overrides):
    return preset_config("smoke", out_dir=str(tmp_path), run_name=name, progress=False, **overrides)


def _cli(tmp_path, name, *args):
    return main(["--preset", "smoke", "--out-dir", str(tmp_path), "--run-name", name, "--no-progress", *args])


def test_non_finite_loss_stops_the_run_keeps_the_checkpoint_and_marks_it_failed(tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real = F.cross_entropy

    def poisoned(*args, **kwargs):  # a real NaN in epoch 2: the loss, then the gradients, then the weights
        calls["n"] += "label_smoothing" in kwargs  # the training loss (evaluation calls it too)
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == STEPS + 5 else loss
    monkeypatch.setattr(step_module.F, "cross_entropy", poisoned)
    assert _cli(tmp_path, "nan", "--log-every", "4") == 1
    assert "training failed: non-finite training loss (nan) at epoch 2, step 26" in capsys.readouterr().err
    run = load_run(str(tmp_path / "nan"))
    assert run.status == "failed" and run.summary is None
    assert (run.failure["epoch"], run.failure["step"], run.failure["last_checkpoint_epoch"]) == (2, 26, 1)
    state = torch.load(tmp_path / "nan" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())
    steps = load_steps(str(tmp_path / "nan"))
    assert [r["step"] for r in steps] == list(range(1, 27)) and steps[-1]["loss"] is None
    assert all(math.isfinite(r["loss"]) for r in steps[:-1])
    with pytest.raises(ValueError, match="failed"):  # a failed run is not resumed
        train(_smoke(tmp_path, "nan", resume=True))
    # the command line: a learning rate that diverges at once, exit status 1
    monkeypatch.setattr(step_module.F, "cross_entropy", real)
    assert _cli(tmp_path, "lr", "--lr", "1e30") == 1
    assert load_run(str(tmp_path / "lr")).status == "failed"
    with pytest.raises(TrainingFailed, match="epoch 1"):
        train(_smoke(tmp_path, "lr2", lr=1e30))


@pytest.mark.parametrize("args, message", [
    (["--milestones", "3,x"], "milestones"), (["--milestones", "60,30"], "milestones"),
    (["--weight-decay", "-1"], "weight_decay"), (["--momentum", "1.5"], "momentum"), (["--lr", "nan"], "lr"),
    (["--label-smoothing", "1"], "label_smoothing"), (["--warmup-epochs", "3"], "warmup_epochs"),
    (["--val-fraction", "1"], "val_fraction"), (["--csc-backward", "maybe"], "csc_backward"),
    (["--stem-relu", "on"], "stem_relu"), (["--amp", "bf16", "--dtype", "float64"], "float64"),
])
def test_argument_errors_are_usage_errors_and_leave_no_folder(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        _cli(tmp_path, "bad", *args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_errors_found_before_the_folder_is_created(tmp_path, monkeypatch, capsys):
    assert _cli(tmp_path, "bad", "--batch-size", "2000") == 2  # more than the 1347 training images
    assert "exceeds" in capsys.readouterr().err
    assert _cli(tmp_path, "bad", "--device", "cuda:0" if not torch.cuda.is_available() else "nodevice") == 2
    assert _cli(tmp_path, "bad", "--amp", "fp16", "--device", "cpu") == 2
    assert main(["--preset", "sdnet18-cifar10", "--data-dir", str(tmp_path / "none"), "--out-dir", str(tmp_path),
                 "--run-name", "bad"]) == 2
    monkeypatch.setenv("WORLD_SIZE", "3")  # as torchrun would set it: 64 does not split over 3 processes
    with pytest.raises(ValueError, match="divisible by the number of processes 3"):
        train(_smoke(tmp_path, "bad"))
    assert not (tmp_path / "bad").exists()


def test_resume_after_a_kill_between_the_last_checkpoint_and_the_summary(tmp_path, monkeypatch):
    straight = load_run(train(_smoke(tmp_path, "straight")))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # stands for SIGKILL after the last checkpoint, before summary.json
    monkeypatch.setattr(loop_module, "_finish", killed)
    with pytest.raises(KeyboardInterrupt):
        train(_smoke(tmp_path, "late"))
    assert load_run(str(tmp_path / "late")).status == "unfinished"
    monkeypatch.undo()
    resumed = load_run(train(_smoke(tmp_path, "late", resume=True)))
    assert resumed.status == "finished" and resumed.provenance["resumed_at_epochs"] == [2]
    for key in ("final_test_accuracy", "final_test_loss", "final_test_top5", "final_train_loss", "epochs"):
        assert resumed.summary[key] == straight.summary[key] and np.isfinite(resumed.summary[key])
    json.loads((tmp_path / "late" / "summary.json").read_text())  # strict JSON


def test_resume_refuses_a_finished_run_and_changed_settings(tmp_path):
    train(_smoke(tmp_path, "done"))
    before = (tmp_path / "done" / "summary.json").read_text()
    with pytest.raises(ValueError, match="finished"):
        train(_smoke(tmp_path, "done", resume=True))
    assert (tmp_path / "done" / "summary.json").read_text() == before  # the result is never lost
    train(_smoke(tmp_path, "short", epochs=1))
    os.remove(tmp_path / "short" / "summary.json")  # as if interrupted after epoch 1 of 2
    with pytest.raises(ValueError, match=r"epochs: 1 -> 2; lr: 0.1 -> 0.5"):
        train(_smoke(tmp_path, "short", resume=True, epochs=2, lr=0.5))
    # where, how fast and how verbosely a run goes may change on resume
    train(_smoke(tmp_path, "short", resume=True, epochs=1, log_every=3, threads=1))
    assert load_run(str(tmp_path / "short")).status == "finished"


def test_grad_scaler_state_is_saved_and_restored(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=3)
    for value in (float("inf"), 1.0, 1.0):  # one skipped step halves the scale, then the growth tracker counts
        model.weight.grad = torch.full_like(model.weight, value)
        model.bias.grad = torch.zeros_like(model.bias)
        scaler.scale(torch.ones(())).item()
        scaler.step(optimizer)
        scaler.update()
    saved = scaler.state_dict()
    assert saved["scale"] == 2.0 ** 9 and saved["_growth_tracker"] == 2
    save_checkpoint(str(tmp_path / "c.pt"), model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                    epoch=1)
    fresh = torch.amp.GradScaler("cpu", init_scale=1.0)
    load_checkpoint(str(tmp_path / "c.pt"), model=model, optimizer=optimizer, scheduler=scheduler, scaler=fresh)
    assert fresh.state_dict() == saved


def test_step_log_top5_validation_and_tensorboard(tmp_path):
    path = train(_smoke(tmp_path, "log", val_fraction=0.2, tensorboard=True, log_every=4))
    run = load_run(path)
    n_train = 1347 - sum(round(0.2 * n) for n in np.bincount(run_labels(path)))
    steps = load_steps(path)
    per_epoch = n_train // 64
    assert [r["step"] for r in steps] == list(range(1, 2 * per_epoch + 1))
    assert all(math.isfinite(r["loss"]) and r["images_per_second"] > 0 for r in steps)
    factor = lr_factor(preset_config("smoke"), per_epoch)
    assert [r["lr"] for r in steps] == [0.1 * factor(t) for t in range(2 * per_epoch)]
    # the epoch's mean training loss is the mean of its steps' losses (every batch has 64 images)
    assert math.isclose(run.metrics[0]["train_loss"], np.mean([r["loss"] for r in steps[:per_epoch]]), rel_tol=1e-9)
    assert all(r["val_accuracy"] is not None for r in run.metrics) and run.summary["best_val_epoch"] in (1, 2)
    # top-1 / top-5 against numpy's argsort on the logits of the final weights (an independent count)
    from cscnb.data.digits import load_digits
    from cscnb.models.factory import build_model
    from cscnb.train.data import build_data
    config = preset_config("smoke", val_fraction=0.2)
    data = build_data(config, torch.device("cpu"))
    model = build_model(config, data)
    model.load_state_dict(torch.load(os.path.join(path, "checkpoint.pt"), weights_only=True)["model"])
    model.eval()
    with torch.no_grad():
        logits = model((data.x_test - data.mean) / data.std).numpy()
    labels = load_digits(seed=0, val_fraction=0.2).y_test.numpy()
    ranked = np.argsort(-logits, axis=1, kind="stable")
    assert math.isclose(run.summary["final_test_accuracy"], np.mean(ranked[:, 0] == labels), abs_tol=1e-12)
    assert math.isclose(run.summary["final_test_top5"], np.mean((ranked[:, :5] == labels[:, None]).any(1)),
                        abs_tol=1e-12)
    # TensorBoard: one train/loss scalar per step, read back with TensorBoard's own reader
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(os.path.join(path, "tensorboard"))
    events.Reload()
    scalars = events.Scalars("train/loss")
    assert [s.step for s in scalars] == [r["step"] for r in steps]
    assert np.allclose([s.value for s in scalars], [r["loss"] for r in steps], rtol=1e-6)
    assert len(events.Scalars("epoch/test_top5")) == 2


def run_labels(path):
    """Training labels of the digits split (test part removed), for the validation carve's size."""
    from cscnb.data.digits import load_digits
    return load_digits(seed=0).y_train.numpy()


def test_schedule_against_torch_schedulers():
    # cosine stepped every iteration equals CosineAnnealingLR(T_max = all iterations) stepped every iteration
    config = preset_config("smoke", epochs=3, schedule="cosine", schedule_unit="iteration")
    factor, steps = lr_factor(config, 7), 21
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    for t in range(steps + 1):
        assert math.isclose(0.1 * factor(t), optimizer.param_groups[0]["lr"], rel_tol=1e-9, abs_tol=1e-15), t
        optimizer.step()
        reference.step()
    # per epoch: constant within an epoch, CosineAnnealingLR(T_max = epochs) between epochs
    factor = lr_factor(preset_config("smoke", epochs=3), 7)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3)
    for epoch in range(3):
        assert all(math.isclose(0.1 * factor(epoch * 7 + i), optimizer.param_groups[0]["lr"]) for i in range(7))
        optimizer.step()
        reference.step()
    # step schedule: MultiStepLR stepped per epoch; linear warm-up over the first epoch
    config = preset_config("smoke", epochs=5, schedule="step", milestones="2,4", warmup_epochs=1)
    factor = lr_factor(config, 4)
    assert [round(factor(t), 12) for t in range(0, 20, 2)] == [0.25, 0.75, 1, 1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01]


def test_metrics_and_step_rewrites_are_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / "metrics.csv")
    for epoch in (1, 2, 3):
        results.append_metrics(path, {"epoch": epoch, "train_loss": 1.0 / epoch, "lr": 0.1})
    before = (tmp_path / "metrics.csv").read_text()

    def broken(*args):
        raise OSError("disk full")
    monkeypatch.setattr(results.os, "replace", broken)
    with pytest.raises(OSError):
        results.truncate_metrics(path, 2)
    # intact, no temp file left
    assert (tmp_path / "metrics.csv").read_text() == before and os.listdir(tmp_path) == ["metrics.csv"]
    monkeypatch.undo()
    results.truncate_metrics(path, 2)
    assert [r["epoch"] for r in results._read_metrics(path)] == [1, 2]
    assert results._read_metrics(path)[1]["train_loss"] == 0.5
    with open(path, "a") as handle:
        handle.write("3,0.33")  # torn by a kill mid-append: dropped when read
    assert [r["epoch"] for r in results._read_metrics(path)] == [1, 2]
    steps = str(tmp_path / "steps.jsonl")
    results.append_steps(steps, [{"epoch": 1, "step": s, "loss": 1.0, "lr": 0.1, "images_per_second": 1.0}
                                 for s in (1, 2, 3)])
    with open(steps, "a") as handle:
        handle.write('{"epoch": 1, "st')  # torn by a kill mid-write
    assert [r["step"] for r in load_steps(steps)] == [1, 2, 3]
    results.truncate_steps(steps, 2)
    assert [r["step"] for r in load_steps(steps)] == [1, 2]
    with pytest.raises(ValueError):
        results.write_json(str(tmp_path / "x.json"), {"a": float("nan")})  # strict JSON
