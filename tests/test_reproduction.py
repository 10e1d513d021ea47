"""cscnb.train.reproduction: the loader that fills chapter 14's table from run folders; cscnb.profiling's cost models.

The run folders are written with the package's own writers (cscnb.train.results), so the loader is tested on
the exact files a training run produces; every asserted value comes from what the test wrote.
"""
import dataclasses
import os
import shutil

import pytest
import torch

from cscnb.profiling import csc_layer_macs, training_flops, training_hours
from cscnb.train import results
from cscnb.train.config import PRESETS, preset_config
from cscnb.train.reproduction import (
    NOT_RUN,
    NOT_STATED,
    TARGETS,
    ReproductionTarget,
    RunFolderError,
    compare_status,
    recipe_comparison,
    recipe_markdown,
    recipe_mismatches,
    report_markdown,
    reproduction_report,
)


def _write_run(root, name, preset="sdnet18-cifar10", *, accuracies=(0.5, 0.7, 0.9), finished=True,
               commit="abc1234def5678", end_time="2026-01-01T00:00:00+00:00", **overrides):
    """A run folder as cscnb.train writes it: config, provenance, one metrics row per epoch, summary if finished."""
    folder = os.path.join(root, name)
    os.makedirs(folder)
    data_dir = {"data_dir": "/data"} if preset.startswith(("sdnet18-", "resnet18-")) else {}
    config = preset_config(preset, **{**data_dir, **overrides})
    results.write_json(os.path.join(folder, "config.json"), dataclasses.asdict(config))
    results.write_json(os.path.join(folder, "provenance.json"),
                       {"git_commit": commit, "end_time": end_time if finished else None, "device": "cuda"})
    for epoch, acc in enumerate(accuracies, 1):
        results.append_metrics(os.path.join(folder, "metrics.csv"), {
            "epoch": epoch, "train_loss": 1.0 / epoch, "train_accuracy": acc, "test_loss": 1.0 / epoch,
            "test_accuracy": acc, "lr": 0.1, "samples_per_second": 1000.0, "epoch_seconds": 1.0})
    if finished:
        results.write_json(os.path.join(folder, "summary.json"), {
            "epochs": len(accuracies), "final_test_accuracy": accuracies[-1], "best_test_accuracy": max(accuracies),
            "final_test_loss": 0.1, "final_train_loss": 0.1, "parameters": 10})
    return folder


def _rows(report):
    return {row.target.key: row for row in report.rows}


def test_missing_results_folder_reads_not_yet_run_for_every_row(tmp_path):
    report = reproduction_report(str(tmp_path / "nothing"))
    assert not report.root_exists
    for row in report.rows:
        expected = NOT_RUN if row.target.available else "no preset here ("
        assert row.status.startswith(expected) and row.value is None and row.runs == ()
    assert "No results folder" in report_markdown(report)


def test_targets_cite_the_repository_figures_and_name_their_presets():
    by_key = {t.key: t for t in TARGETS}
    assert by_key["sdnet18-cifar10"].reported == "95.34 %" and by_key["sdnet18-cifar10"].reported_value == 0.9534
    assert by_key["sdnet18-cifar100"].reported == "78.45 %" and by_key["sdnet18-imagenet"].reported == "69.78 %"
    baseline = by_key["resnet18-cifar10"]
    assert baseline.reported == NOT_STATED and baseline.reported_value is None and baseline.source is None
    for target in TARGETS:
        if target.reported_value is not None:
            assert target.source == "sdnet_repository" and target.paper == "dai2022revisiting"
            assert target.reported == f"{100 * target.reported_value:.2f} %"
        if target.command is not None:  # one process: the authors' runs used one GPU
            assert target.command == (f"python -m cscnb.train --preset {target.preset} --data-dir "
                                      f"{target.data.split('/{')[0]}")
        else:
            assert target.preset is None and target.missing_reason


@pytest.mark.parametrize("values, paper, expected", [
    ([0.951], 0.9534, "reproduced (95.10 % vs 95.34 %, within 0.5 pt; 1 run)"),
    ([0.9484], 0.9534, "reproduced (94.84 % vs 95.34 %, within 0.5 pt; 1 run)"),          # on the boundary
    ([0.9483], 0.9534, "below the paper (94.83 % vs 95.34 %, 0.51 pt below; tolerance 0.5 pt; 1 run)"),
    ([0.93, 0.932, 0.934], 0.9534,
     "below the paper (93.20 % vs 95.34 %, 2.14 pt below; tolerance 0.5 pt; 3 runs, std 0.2 pt)"),
    ([0.96, 0.962], 0.9534,
     "above the paper (96.10 % vs 95.34 %, 0.76 pt above; tolerance 0.5 pt; 2 runs, std 0.14 pt)"),
    ([0.9889], None, "ran: 98.89 % (1 run), no paper figure"),
    ([0.98, 0.99, 1.0], None, "ran: 99.00 % (mean of 3 runs, std 1 pt), no paper figure"),
])
def test_status_compares_with_the_figure_and_its_tolerance(values, paper, expected):
    assert compare_status(values, paper) == expected


def test_finished_run_is_reported_with_its_summary_value_name_and_commit(tmp_path):
    _write_run(tmp_path, "sd-a", accuracies=(0.41, 0.83, 0.9123), commit="0123456789abcdef")
    report = reproduction_report(str(tmp_path))
    row = _rows(report)["sdnet18-cifar10"]
    # 95.34 - 91.23 = 4.11 points below, outside the 0.5-point tolerance
    assert row.status == "below the paper (91.23 % vs 95.34 %, 4.11 pt below; tolerance 0.5 pt; 1 run)"
    assert row.value == 0.9123
    (run,) = row.runs
    assert (run.name, run.commit, run.final, run.best, run.epochs) == ("sd-a", "0123456789abcdef", 0.9123, 0.9123, 3)
    assert (run.world_size, run.batch_size) == (1, 128)
    assert _rows(report)["sdnet18-cifar100"].status == NOT_RUN  # another preset's run does not count
    table = report_markdown(report)
    assert row.status in table and "`sd-a` (0123456789)" in table and "| 128 on 1 process |" in table


def test_unfinished_and_failed_runs(tmp_path):
    _write_run(tmp_path, "c100", preset="sdnet18-cifar100", accuracies=(0.1, 0.2, 0.3, 0.35), finished=False)
    row = _rows(reproduction_report(str(tmp_path)))["sdnet18-cifar100"]
    assert row.status == "unfinished run (epoch 4 of 220)"
    assert row.value is None and row.unfinished == (("c100", 4, 220),)
    failed = _write_run(tmp_path, "nan", accuracies=(0.1,), finished=False)
    results.write_json(os.path.join(failed, "failed.json"), {"status": "failed", "reason": "loss is nan at step 7"})
    row = _rows(reproduction_report(str(tmp_path)))["sdnet18-cifar10"]
    assert row.status == "failed run (loss is nan at step 7)" and row.failed == (("nan", "loss is nan at step 7"),)


def test_two_finished_runs_give_their_mean_and_spread_newest_first(tmp_path):
    _write_run(tmp_path, "r1", accuracies=(0.5, 0.94), end_time="2026-01-01T00:00:00+00:00")
    _write_run(tmp_path, "r2", accuracies=(0.5, 0.96), end_time="2026-02-01T00:00:00+00:00")
    _write_run(tmp_path, "r3", accuracies=(0.2,), finished=False)  # a finished run takes precedence
    row = _rows(reproduction_report(str(tmp_path)))["sdnet18-cifar10"]
    assert [r.name for r in row.runs] == ["r2", "r1"]
    assert row.value == pytest.approx(0.95, abs=1e-12)
    # mean 95.00 %, 0.34 pt from 95.34 %; sample std of 94 and 96 is sqrt(2) = 1.41 pt
    assert row.status == "reproduced (95.00 % vs 95.34 %, within 0.5 pt; 2 runs, std 1.41 pt)"
    assert row.unfinished == (("r3", 1, 220),)


def test_run_with_a_changed_recipe_does_not_count(tmp_path):
    _write_run(tmp_path, "short", accuracies=(0.5, 0.6), epochs=2)
    row = _rows(reproduction_report(str(tmp_path)))["sdnet18-cifar10"]
    assert row.status == NOT_RUN
    assert row.ignored and row.ignored[0][0] == "short" and "epochs=2 (recipe: 220)" in row.ignored[0][1]
    recipe = preset_config("sdnet18-cifar10", data_dir="/d").__dict__
    # where a run goes, its seed and its speed options are not part of the recipe
    assert recipe_mismatches({**recipe, "device": "cpu", "threads": 2, "seed": 7, "compile": True},
                             "sdnet18-cifar10") == []
    other_amp = "fp16" if recipe["amp"] != "fp16" else "off"
    assert recipe_mismatches({**recipe, "amp": other_amp}, "sdnet18-cifar10") == [
        f"amp={other_amp!r} (recipe: {recipe['amp']!r})"]
    assert recipe_mismatches({**recipe, "dtype": "float64"}, "sdnet18-cifar10") == [
        "dtype='float64' (recipe: 'float32')"]
    # a field missing from an older config.json counts as TrainConfig's default (224 for image_size)
    older = {k: v for k, v in recipe.items() if k != "image_size"}
    assert recipe_mismatches(older, "sdnet18-cifar10") == []
    assert recipe_mismatches({**older, "image_size": 112}, "sdnet18-cifar10") == ["image_size=112 (recipe: 224)"]


def test_recipe_comparison_reads_presets_at_run_time(monkeypatch):
    rows = recipe_comparison()
    assert {r.preset for r in rows} == {t.preset for t in TARGETS if t.available and t.paper is not None}
    assert all(r.verdict == "matches" or r.verdict.startswith("differs: ") for r in rows)
    by = {(r.preset, r.item): r for r in rows}
    assert by["sdnet18-cifar10", "learning rate"].verdict == "matches"
    assert by["sdnet18-imagenet", "weight decay"].authors == "0.0001"
    # a preset changed at run time is compared as it is then: λ 0.3 and 3 iterations read off the built model
    changed = {**PRESETS["sdnet18-cifar10"], "csc_lam": 0.3, "csc_n_iter": 3, "lr": 0.2}
    monkeypatch.setitem(PRESETS, "sdnet18-cifar10", changed)
    by = {r.item: r for r in recipe_comparison(["sdnet18-cifar10"])}
    assert by["CSC λ"].ours == "0.3" and by["CSC λ"].verdict.startswith("differs")
    assert by["CSC iterations"].ours == "3" and by["learning rate"].ours == "0.2"
    assert by["Nesterov momentum"].verdict == "matches"
    table = recipe_markdown(recipe_comparison(["sdnet18-cifar10"]))
    assert table.count("\n") == len(by) + 1 and "| CSC λ | sdnet18-cifar10 | 0.1 | 0.3 | differs:" in table
    with pytest.raises(ValueError, match="preset"):
        recipe_comparison(["no-such-preset"])


def test_recipe_comparison_covers_the_trainer_the_stopping_rule_and_the_stem(monkeypatch):
    by = {(r.preset, r.item): r for r in recipe_comparison()}
    for preset in ("sdnet18-cifar10", "sdnet18-imagenet"):
        # the four known differences: dropped last batch, channels_last, cudnn.benchmark, the power-iteration rule
        assert by[preset, "incomplete last batch of an epoch"].ours == "'dropped'"
        assert by[preset, "channels_last memory format"].ours == "True"
        assert by[preset, "cudnn.benchmark"].ours == "True"
        rule = by[preset, "power-iteration stopping rule"]
        assert "Rayleigh quotient <= 1e-05" in rule.ours
        assert rule.verdict.startswith("differs: the tolerance is relative")
        assert by[preset, "synthesis Az"].verdict == "matches"
    assert by["sdnet18-cifar10", "stem geometry"].ours == "'CSC 3×3, stride 1, padding 1 → BatchNorm'"
    assert by["sdnet18-imagenet", "stem geometry"].ours == \
        "'CSC 7×7, stride 2, padding 3 → BatchNorm → MaxPool(3, 2, 1)'"
    assert all(r.verdict == "matches" for (p, item), r in by.items() if item == "stem geometry")
    # read at run time: a CIFAR preset without channels_last and without a tolerance
    changed = {**PRESETS["sdnet18-cifar10"], "channels_last": False, "csc_power_tol": 0.0}
    monkeypatch.setitem(PRESETS, "sdnet18-cifar10", changed)
    rows = {r.item: r for r in recipe_comparison(["sdnet18-cifar10"])}
    assert rows["channels_last memory format"].verdict == "matches"
    assert rows["power-iteration stopping rule"].ours == "'none: every iteration runs'"


@pytest.mark.parametrize("damage, file, reason", [
    ("config.json", "config.json", "unreadable JSON"),
    ("provenance.json", "provenance.json", "unreadable JSON"),
    ("summary.json", "summary.json", "unreadable JSON"),
    ("metrics.csv", "metrics.csv", "unparsable"),
    ("no-provenance", "provenance.json", "missing"),
    ("summary-nan", "summary.json", "not a finite number"),
])
def test_malformed_folder_is_skipped_with_the_file_named_or_raises_when_strict(tmp_path, damage, file, reason):
    _write_run(tmp_path, "good", accuracies=(0.7, 0.8))
    bad = _write_run(tmp_path, "bad", accuracies=(0.7, 0.99))
    if damage == "no-provenance":
        os.remove(os.path.join(bad, "provenance.json"))
    elif damage == "summary-nan":
        with open(os.path.join(bad, "summary.json"), "w", encoding="utf-8") as handle:  # write_json refuses NaN
            handle.write('{"final_test_accuracy": NaN}')
    elif damage == "metrics.csv":
        with open(os.path.join(bad, damage), "a", encoding="utf-8") as handle:
            handle.write("3,not-a-number,,,,,,\n")
    else:
        with open(os.path.join(bad, damage), "w", encoding="utf-8") as handle:
            handle.write("{ truncated")
    report = reproduction_report(str(tmp_path))
    (skipped,) = report.skipped
    assert (skipped.folder, skipped.file) == ("bad", file) and reason in skipped.reason
    row = _rows(report)["sdnet18-cifar10"]
    assert [r.name for r in row.runs] == ["good"] and row.value == 0.8  # the broken copy hides nothing
    assert f"Skipped `bad`: {file}" in report_markdown(report)
    with pytest.raises(RunFolderError, match=f"'{bad}'.*{file}") as info:
        reproduction_report(str(tmp_path), strict=True)
    assert (info.value.folder, info.value.file) == (bad, file)
    shutil.rmtree(bad)  # without the broken folder, strict mode reads the good one
    assert _rows(reproduction_report(str(tmp_path), strict=True))["sdnet18-cifar10"].value == 0.8


def test_bad_arguments_are_rejected_by_name():
    with pytest.raises(TypeError, match="root"):
        reproduction_report(3)
    with pytest.raises(TypeError, match="targets"):
        reproduction_report("results", targets=["sdnet18-cifar10"])
    assert not ReproductionTarget("x", None, "claim", "1 %", 0.01, "no-such-preset", "cmd", "data").available
    with pytest.raises(TypeError, match="preset"):
        ReproductionTarget("x", "key", "claim", "1 %", 0.01, 3, "cmd", "data")
    with pytest.raises(ValueError, match="tolerance"):
        ReproductionTarget("x", "key", "claim", "1 %", 0.01, "smoke", "cmd", "data", tolerance=0.0)
    with pytest.raises(ValueError, match="reported_value"):
        ReproductionTarget("x", "key", "claim", "95 %", 95.0, "smoke", "cmd", "data")
    with pytest.raises(ValueError, match="n_iter"):
        csc_layer_macs(10, 0)
    with pytest.raises(TypeError, match="conv_macs"):
        csc_layer_macs(1.5, 2)
    with pytest.raises(ValueError, match="flops_per_second"):
        training_hours(1.0, 1.0, train_images=1, test_images=1, epochs=1, flops_per_second=0)
    with pytest.raises(ValueError, match="epochs"):
        training_hours(1.0, 1.0, train_images=1, test_images=1, epochs=-1, flops_per_second=1.0)


def test_csc_layer_flops_follow_the_closed_form_and_hours_the_formula():
    from cscnb import CSCLayer
    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 6, 6), torch.tensor([0, 3])
    conv_macs, linear_flops = 4 * 3 * 9 * 36, 2 * 144 * 4   # per image: the 3x3 conv at 6x6, the linear head
    for k in (1, 3):
        csc = CSCLayer(3, 4, 3, padding=1, n_iter=k)
        counts = training_flops(torch.nn.Sequential(csc, torch.nn.Flatten(), torch.nn.Linear(144, 4)), x, y)
        assert counts["forward"] - linear_flops == 2 * csc_layer_macs(conv_macs, k) == 2 * (2 * k - 1) * conv_macs
        assert counts["train_step"] > counts["forward"]
    hours = training_hours(3e9, 1e9, train_images=100, test_images=10, epochs=2, flops_per_second=1e12)
    assert hours == pytest.approx(2 * (100 * 3e9 + 10 * 1e9) / 1e12 / 3600)
