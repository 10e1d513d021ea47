"""python -m cscnb.robustness on runs trained here: a tiny digits SDNet and an SDNet on CIFAR-shaped fake files.

Every checked value comes from an independent computation: the clean accuracy from the trainer's own
metrics.csv, sweep entries from direct forward passes at that λ on the recorded evaluation indices, the
stem error from an explicit loop over atoms and positions, the line from the normal equations, a
CIFAR-10-C file that holds the clean test images from the clean condition.
"""
import hashlib
import json
import os

import numpy as np
import pytest
import torch

from cscnb.data.cifar import CIFAR_FILES
from cscnb.nn.csc_layer import test_time_lam
from cscnb.robustness import SDNET_LAMS, SDNET_NOISE_LEVELS, sdnet_noise
from cscnb.robustness.adaptive import LamLine, fit_lam_line, forward_with_stem_error, stem_layer
from cscnb.robustness.cli import main
from cscnb.robustness.evaluate import REPORT_FORMAT, calibration_split, load_report, load_trained_run
from cscnb.train import train
from cscnb.train.config import preset_config

LAMS = ["0.1", "0.4", "0.8"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    return train(preset_config("digits-sdnet", epochs=2, out_dir=str(root), run_name="sd", progress=False))


def _last_test_accuracy(run_dir):
    import csv
    with open(os.path.join(run_dir, "metrics.csv"), newline="", encoding="utf-8") as handle:
        return float(list(csv.DictReader(handle))[-1]["test_accuracy"])


def test_digits_report_against_direct_computations(digits_run, tmp_path):
    out = tmp_path / "report.json"
    assert main([digits_run, "--out", str(out), "--lams", *LAMS, "--noises", "gaussian", "impulse",
                 "--levels", "0.1", "0.3", "--attacks", "fgsm", "--eps", "0.05", "--seed", "3"]) == 0
    report = load_report(out)
    assert report["format"] == REPORT_FORMAT and report["lams"] == [0.1, 0.4, 0.8] and report["layers"] == "stem"
    assert report["reference_lam"] == 0.1 and report["n_test"] == 450 and report["n_evaluation"] == 225
    # the trainer evaluated the same weights (its step-size estimate may differ slightly after loading)
    assert abs(report["clean_full_test_accuracy_at_reference_lam"] - _last_test_accuracy(digits_run)) <= 0.01
    prov = report["provenance"]
    with open(os.path.join(digits_run, "checkpoint.pt"), "rb") as handle:
        assert prov["checkpoint_sha256"] == hashlib.sha256(handle.read()).hexdigest()
    assert prov["torch"] == torch.__version__ and prov["arguments"]["seed"] == 3 and prov["git_commit"]
    assert prov["run_config"]["preset"] == "digits-sdnet" and prov["device"] == "cpu"
    names = [(c["family"], c["name"], c.get("level", c.get("eps"))) for c in report["conditions"]]
    assert names == [("clean", "clean", None), ("sdnet_noise", "gaussian", 0.1), ("sdnet_noise", "gaussian", 0.3),
                     ("sdnet_noise", "impulse", 0.1), ("sdnet_noise", "impulse", 0.3), ("attack", "fgsm", 0.05)]
    assert set(report["adaptive_lines"]) == {"gaussian", "impulse", "pooled"}
    # sweep entries recomputed here: the model at each λ on the evaluation indices of the recorded split
    run = load_trained_run(digits_run)
    _, evaluation = calibration_split(450, 0.5, 3)
    x01 = run.model.to_unit(run.x_test)[evaluation]
    y = run.y_test[evaluation]
    clean = report["conditions"][0]
    for lam, reported in zip((0.1, 0.4, 0.8), clean["accuracy"], strict=True):
        with torch.no_grad(), test_time_lam(stem_layer(run.model), lam):
            assert float((run.model(x01).argmax(1) == y).double().mean()) == pytest.approx(reported, abs=1e-12)
    assert float(stem_layer(run.model).lam) == pytest.approx(0.1)  # restored after the sweeps
    # the pooled line's points are every (error, best λ) of the per-noise lines; best λ lies on the grid
    pooled = report["adaptive_lines"]["pooled"]
    per_noise = report["adaptive_lines"]["gaussian"]["points"] + report["adaptive_lines"]["impulse"]["points"]
    assert pooled["points"] == per_noise and all(lam in (0.1, 0.4, 0.8) for _, lam in per_noise)
    for entry in report["conditions"]:
        assert all(0 <= a <= 1 for a in entry["accuracy"]) and entry["adaptive"]
        assert 0.1 <= entry["adaptive"]["pooled"]["mean_lam"] <= 0.8


def test_existing_report_is_kept_without_force(digits_run, tmp_path, capsys):
    out = tmp_path / "r.json"
    args = [digits_run, "--out", str(out), "--lams", "0.1", "--noises", "none", "--attacks", "none"]
    assert main(args) == 0
    before = out.read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(args[:-2] + ["--attacks", "fgsm", "--eps", "0.1"])
    assert exit_info.value.code == 2 and "--force" in capsys.readouterr().err and out.read_text() == before
    assert main(args[:-2] + ["--attacks", "fgsm", "--eps", "0.1", "--force"]) == 0
    assert json.loads(out.read_text())["conditions"][-1]["name"] == "fgsm"
    assert sorted(os.listdir(tmp_path)) == ["r.json"]  # no temporary file left behind


@pytest.mark.parametrize("args, message", [
    (["--noises", "rain"], "unknown"), (["--attacks", "cw"], "fgsm"), (["--corruptions", "fog"], "cifar10c-dir"),
    (["--lams", "-1"], "lams"), (["--calibration-fraction", "1.0"], "calibration_fraction")])
def test_bad_arguments_are_usage_errors(digits_run, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main([digits_run, "--out", str(tmp_path / "x.json"), *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_runs_without_checkpoint_or_csc_layer_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--noises", "none"])
    assert "has no config.json" in capsys.readouterr().err
    cnn = train(preset_config("smoke", epochs=1, out_dir=str(tmp_path), run_name="cnn", progress=False))
    with pytest.raises(SystemExit):
        main([cnn, "--noises", "none", "--attacks", "none"])
    assert "no CSC layer" in capsys.readouterr().err


def _explicit_synthesis(weight, code, padding, size):
    """A c by placing every atom, scaled by its coefficient, at its position (stride 1): an explicit loop."""
    out = torch.zeros(weight.shape[1], size + 2 * padding, size + 2 * padding, dtype=torch.float64)
    k = weight.shape[-1]
    for atom in range(weight.shape[0]):
        for i in range(code.shape[1]):
            for j in range(code.shape[2]):
                out[:, i:i + k, j:j + k] += code[atom, i, j] * weight[atom]
    return out[:, padding:padding + size, padding:padding + size]


def test_stem_error_equals_an_explicit_reconstruction(digits_run):
    run = load_trained_run(digits_run)
    stem = stem_layer(run.model)
    x01 = run.model.to_unit(run.x_test[:3])
    seen = {}
    handle = stem.register_forward_hook(lambda m, i, o: seen.update(x=i[0], c=o))
    with torch.no_grad():
        _, errors = forward_with_stem_error(run.model, x01)
    handle.remove()
    weight = stem.weight.detach().double()
    weight = weight / weight.flatten(1).norm(dim=1)[:, None, None, None]
    for n in range(3):
        residual = seen["x"][n].double() - _explicit_synthesis(weight, seen["c"][n].double(), 1, 8)
        assert float(errors[n]) == pytest.approx(float(residual.square().mean()), rel=1e-5)


def test_line_fit_is_least_squares_and_choice_snaps_to_the_grid():
    errors, best = [0.1, 0.2, 0.4, 0.5], [0.1, 0.3, 0.6, 0.9]
    line = fit_lam_line(errors, best, grid=[0.9, 0.1, 0.5], reference_lam=0.1)
    r, lam = np.array(errors), np.array(best)
    slope = ((r - r.mean()) * (lam - lam.mean())).sum() / ((r - r.mean()) ** 2).sum()   # normal equations
    assert line.slope == pytest.approx(slope, rel=1e-12)
    assert line.intercept == pytest.approx(lam.mean() - slope * r.mean(), rel=1e-12)
    assert line.grid == (0.1, 0.5, 0.9)
    by_hand = LamLine(0.0, 1.0, (0.1, 0.5, 0.9), 0.1)   # λ = r, clipped to [0.1, 0.9], nearest grid value
    chosen = by_hand.choose(torch.tensor([-3.0, 0.2, 0.35, 0.71, 5.0]))
    assert chosen.tolist() == [0.1, 0.1, 0.5, 0.9, 0.9]
    with pytest.raises(ValueError, match="two distinct"):
        fit_lam_line([0.2, 0.2], [0.1, 0.3], grid=[0.1], reference_lam=0.1)
    with pytest.raises(ValueError, match="equal length"):
        fit_lam_line([0.1, 0.2], [0.1], grid=[0.1], reference_lam=0.1)


def test_authors_noises_levels_and_statistics():
    assert SDNET_NOISE_LEVELS["gaussian"][0] == 0.02 and SDNET_NOISE_LEVELS["gaussian"][-1] == 0.2
    assert SDNET_NOISE_LEVELS["shot"] == (60.0, 54.0, 48.0, 42.0, 36.0, 30.0, 24.0, 18.0, 12.0, 6.0)
    assert len(SDNET_NOISE_LEVELS["impulse"]) == 9 and SDNET_NOISE_LEVELS["impulse"][-1] == 0.27
    assert SDNET_LAMS[0] == 0.1 and SDNET_LAMS[-1] == 1.4 and len(SDNET_LAMS) == 14
    g = torch.Generator().manual_seed(0)
    x = torch.full((200_000,), 0.5, dtype=torch.float64)
    assert float((sdnet_noise(x, "gaussian", 0.1, generator=g) - x).std()) == pytest.approx(0.1, rel=0.02)
    assert float((sdnet_noise(x, "speckle", 0.2, generator=g) - x).std()) == pytest.approx(0.1, rel=0.02)
    assert float(sdnet_noise(x, "shot", 30.0, generator=g).var()) == pytest.approx(0.5 / 30, rel=0.03)
    flipped = sdnet_noise(x, "impulse", 0.09, generator=g) != x
    assert float(flipped.double().mean()) == pytest.approx(0.09, rel=0.03)
    assert float(sdnet_noise(torch.ones(1000), "gaussian", 0.5, generator=g).max()) <= 1.0  # clipped
    with pytest.raises(ValueError, match="noise name"):
        sdnet_noise(x, "rain", 0.1)


def _write_fake_cifar(folder, n=24):
    """CIFAR-10 binary files of n random records each (labels 0..9), as the loader expects them."""
    rng = np.random.default_rng(0)
    train_names, test_names = CIFAR_FILES["cifar10"]
    for name in train_names + test_names:
        labels = rng.integers(0, 10, size=(n, 1), dtype=np.uint8)
        images = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
        (folder / name).write_bytes(np.concatenate([labels, images], axis=1).tobytes())
    test = np.frombuffer((folder / test_names[0]).read_bytes(), dtype=np.uint8).reshape(n, -1)
    return test[:, 1:].reshape(n, 3, 32, 32).transpose(0, 2, 3, 1), test[:, 0].astype(np.int64)


def test_cifar_run_with_cifar10c_files(tmp_path):
    data = tmp_path / "cifar"
    data.mkdir()
    images, labels = _write_fake_cifar(data)
    corrupted = tmp_path / "c10c"
    corrupted.mkdir()
    np.save(corrupted / "labels.npy", np.tile(labels, 5))
    np.save(corrupted / "brightness.npy", np.tile(images, (5, 1, 1, 1)))     # every severity = the clean images
    noisy = np.clip(images.astype(int) + np.random.default_rng(1).integers(-60, 61, images.shape), 0, 255)
    np.save(corrupted / "gaussian_noise.npy", np.tile(noisy.astype(np.uint8), (5, 1, 1, 1)))
    torch.manual_seed(0)
    run = train(preset_config("sdnet18-cifar10", data_dir=str(data), width=4, epochs=1, batch_size=24,
                              out_dir=str(tmp_path / "runs"), run_name="c10", progress=False, threads=1))
    out = tmp_path / "c10.json"
    assert main([run, "--out", str(out), "--lams", "0.1", "0.5", "--noises", "gaussian", "--levels", "0.05", "0.2",
                 "--cifar10c-dir", str(corrupted), "--severities", "1", "5", "--attacks", "pgd", "--eps",
                 "0.03", "--pgd-steps", "2", "--calibration-fraction", "0.25"]) == 0
    report = load_report(out)
    assert report["n_evaluation"] == 18 and report["n_calibration"] == 6
    by_name = {(c["name"], c.get("severity")): c for c in report["conditions"]}
    assert {k for k in by_name if k[1]} == {("gaussian_noise", 1), ("gaussian_noise", 5), ("brightness", 1),
                                            ("brightness", 5)}
    for severity in (1, 5):  # the clean images read back from the .npy layout give the clean accuracies
        assert by_name["brightness", severity]["accuracy"] == by_name["clean", None]["accuracy"]
    np.save(corrupted / "labels.npy", np.tile((labels + 1) % 10, 5))
    with pytest.raises(SystemExit):
        main([run, "--out", str(tmp_path / "bad.json"), "--lams", "0.1", "--noises", "none", "--attacks", "none",
              "--cifar10c-dir", str(corrupted), "--calibration-fraction", "0"])
    assert not (tmp_path / "bad.json").exists()
