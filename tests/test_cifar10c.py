"""The CIFAR-10-C loader on small files in the official .npy layout, written by the tests."""
import numpy as np
import pytest
import torch

from cscnb.data.cifar10c import available_corruptions, load_cifar10c


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    n = 4  # images per severity (the official files hold 10 000)
    images = rng.integers(0, 256, size=(5 * n, 32, 32, 3), dtype=np.uint8)
    labels = np.tile(rng.integers(0, 10, size=n), 5).astype(np.int64)
    np.save(tmp_path / "gaussian_noise.npy", images)
    np.save(tmp_path / "labels.npy", labels)
    return tmp_path, images, labels, n


def test_severity_blocks_channels_first(folder):
    path, images, labels, n = folder
    assert available_corruptions(path) == ["gaussian_noise"]
    for severity in range(1, 6):
        x, y = load_cifar10c(path, "gaussian_noise", severity)
        block = slice((severity - 1) * n, severity * n)
        assert x.dtype == torch.uint8 and x.shape == (n, 3, 32, 32) and y.dtype == torch.int64
        # pixel (c, h, w) of the tensor is pixel (h, w, c) of the file
        assert np.array_equal(x.permute(0, 2, 3, 1).numpy(), images[block])
        assert np.array_equal(y.numpy(), labels[block])


def test_bad_files_and_arguments(folder, tmp_path):
    path, images, labels, n = folder
    with pytest.raises(FileNotFoundError, match="shot_noise.npy"):
        load_cifar10c(path, "shot_noise", 1)
    with pytest.raises(ValueError, match="corruption"):
        load_cifar10c(path, "rain", 1)
    with pytest.raises(ValueError, match="severity"):
        load_cifar10c(path, "gaussian_noise", 6)
    with pytest.raises(TypeError, match="severity"):
        load_cifar10c(path, "gaussian_noise", 1.0)
    with pytest.raises(TypeError, match="data_dir"):
        load_cifar10c(3, "gaussian_noise", 1)
    with pytest.raises(FileNotFoundError, match="data_dir"):
        load_cifar10c(tmp_path / "nowhere", "gaussian_noise", 1)
    np.save(path / "fog.npy", images[:, :16])  # wrong image shape
    with pytest.raises(ValueError, match="fog.npy"):
        load_cifar10c(path, "fog", 1)
    np.save(path / "snow.npy", images[:-1])  # not five equal blocks
    with pytest.raises(ValueError, match="5 equal"):
        load_cifar10c(path, "snow", 1)
    np.save(path / "labels.npy", labels[:-1])
    with pytest.raises(ValueError, match="labels.npy"):
        load_cifar10c(path, "gaussian_noise", 1)
    np.save(path / "labels.npy", labels + 10)
    with pytest.raises(ValueError, match="0..9"):
        load_cifar10c(path, "gaussian_noise", 1)
    np.save(path / "labels.npy", np.array([{"a": 1}] * len(labels), dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="labels.npy"):
        load_cifar10c(path, "gaussian_noise", 1)
