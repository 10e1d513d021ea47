"""CIFAR binary decoding, on-device augmentation and the ImageNet folder loader, on tiny files written here."""
import os

import numpy as np
import pytest
import torch

from cscnb.data.cifar import CIFAR_FILES, center_crop, crop_flip, draw_crop_flip, load_cifar, random_crop_flip
from cscnb.data.imagenet import ImageFolder


def _records(n, label_bytes, first_label, offset):
    """n records whose pixel (c, h, w) of record i is (offset + 11 i + 5 c + 3 h + w) mod 256 — CHW order."""
    images = np.empty((n, 3, 32, 32), dtype=np.uint8)
    c, h, w = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    labels = np.empty((n, label_bytes), dtype=np.uint8)
    for i in range(n):
        images[i] = (offset + 11 * i + 5 * c + 3 * h + w) % 256
        labels[i] = [(first_label + i + k * 7) % 100 for k in range(label_bytes)]
    raw = np.concatenate([labels, images.reshape(n, -1)], axis=1).tobytes()
    return raw, torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def _write_cifar(folder, dataset, n=2):
    train_names, test_names = CIFAR_FILES[dataset]
    label_bytes = 1 if dataset == "cifar10" else 2
    expected = {"train": [], "test": []}
    for split, names in (("train", train_names), ("test", test_names)):
        for index, name in enumerate(names):
            raw, images, labels = _records(n + index, label_bytes, first_label=3 * index, offset=17 * index)
            (folder / name).write_bytes(raw)
            expected[split].append((images, labels))
    return {k: (torch.cat([e[0] for e in v]), torch.cat([e[1] for e in v])) for k, v in expected.items()}


def test_cifar10_binary_decoding_is_chw_with_labels(tmp_path):
    expected = _write_cifar(tmp_path, "cifar10")
    split = load_cifar(tmp_path, "cifar10")
    assert split.x_train.dtype == torch.uint8 and split.x_train.shape == (2 + 3 + 4 + 5 + 6, 3, 32, 32)
    assert torch.equal(split.x_train, expected["train"][0]) and torch.equal(split.y_train, expected["train"][1][:, 0])
    assert torch.equal(split.x_test, expected["test"][0]) and torch.equal(split.y_test, expected["test"][1][:, 0])
    # the red plane comes first: pixel (c=0, h=0, w=1) of record 0 is 1, (c=1, h=0, w=0) is 5
    assert int(split.x_train[0, 0, 0, 1]) == 1 and int(split.x_train[0, 1, 0, 0]) == 5
    assert split.num_classes == 10


def test_cifar100_reads_fine_or_coarse_labels(tmp_path):
    expected = _write_cifar(tmp_path, "cifar100", n=3)
    fine = load_cifar(tmp_path, "cifar100")
    coarse = load_cifar(tmp_path, "cifar100", fine_labels=False)
    assert torch.equal(fine.y_train, expected["train"][1][:, 1]) and fine.num_classes == 100
    assert torch.equal(coarse.y_train, expected["train"][1][:, 0]) and coarse.num_classes == 20
    assert torch.equal(fine.x_test, expected["test"][0])


def test_missing_files_and_bad_sizes_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_batch_1.bin"):
        load_cifar(tmp_path, "cifar10")
    _write_cifar(tmp_path, "cifar10")
    with open(tmp_path / "test_batch.bin", "ab") as handle:
        handle.write(b"\x00" * 10)  # a truncated / padded file is not a whole number of records
    with pytest.raises(ValueError, match="test_batch.bin.*record size 3073"):
        load_cifar(tmp_path, "cifar10")
    with pytest.raises(ValueError, match="dataset"):
        load_cifar(tmp_path, "svhn")


def test_random_crop_flip_windows_of_the_padded_image():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 6, 6), dtype=torch.uint8)
    assert torch.equal(random_crop_flip(x, torch.Generator().manual_seed(1), padding=0, flip=False), x)
    flipped = random_crop_flip(x, torch.Generator().manual_seed(1), padding=0, flip=True)
    is_flipped = torch.tensor([torch.equal(f, o.flip(-1)) for f, o in zip(flipped, x, strict=True)])
    is_same = torch.tensor([torch.equal(f, o) for f, o in zip(flipped, x, strict=True)])
    assert bool((is_flipped | is_same).all()) and 10 < int(is_flipped.sum()) < 54
    out = random_crop_flip(x, torch.Generator().manual_seed(2), padding=2)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for o, p in zip(out, padded, strict=True):
        matches = [(t, left, f) for t in range(5) for left in range(5) for f in (0, 1)
                   if torch.equal(o, (p[:, t:t + 6, left:left + 6].flip(-1) if f else p[:, t:t + 6, left:left + 6]))]
        assert matches, "every output is a (flipped) window of the padded image"
        offsets.add(matches[0][:2])
    assert len(offsets) > 5  # the offsets vary
    again = random_crop_flip(x, torch.Generator().manual_seed(2), padding=2)
    assert torch.equal(out, again)  # a seeded generator reproduces the augmentation
    assert random_crop_flip(x, torch.Generator().manual_seed(2), padding=0, size=4).shape == (64, 3, 4, 4)
    assert torch.equal(center_crop(x, 4), x[..., 1:5, 1:5])
    with pytest.raises(ValueError, match="images"):
        random_crop_flip(x[0], torch.Generator())



def test_crop_flip_choices_slice_like_the_batch():
    # random_crop_flip = crop_flip at the choices of draw_crop_flip; a slice of the choices augments that slice
    x = torch.randint(0, 256, (12, 3, 6, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = random_crop_flip(x, torch.Generator().manual_seed(3), padding=2)
    choices = draw_crop_flip(12, (6, 6), torch.Generator().manual_seed(3), padding=2)
    assert torch.equal(crop_flip(x, choices, padding=2), out)
    assert torch.equal(crop_flip(x[4:8], tuple(c[4:8] for c in choices), padding=2), out[4:8])
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i, (t, j, m) in enumerate(zip(*choices, strict=True)):  # image by image, from the choices' definition
        window = padded[i, :, t:t + 6, j:j + 6]
        assert torch.equal(out[i], window.flip(-1) if m else window)
    assert len({(int(t), int(j)) for t, j, _ in zip(*choices, strict=True)}) > 3 and 0 < int(choices[2].sum()) < 12
    top, left, mirror = draw_crop_flip(5, (6, 6), torch.Generator(), padding=0, size=4, flip=False)
    assert mirror is None and top.shape == left.shape == (5,) and int(top.max()) <= 2


def test_augmented_cifar_batches_do_not_depend_on_the_process_count(tmp_path):
    # the trainer's CIFAR batches (recipe preset: crop 32 of the 4-padded image + flip) on 30 generated images:
    # the ranks' slices put together are the one-process batch, recomputed here as the documented recipe
    from cscnb.train.config import preset_config
    from cscnb.train.data import build_data, epoch_generator
    _write_cifar(tmp_path, "cifar10", n=4)
    data = build_data(preset_config("sdnet18-cifar10", data_dir=str(tmp_path), dtype="float64", seed=2), "cpu")
    assert data.augment and data.n_train == 30
    whole = list(data.train_batches(1, 8))
    perm, generator = torch.randperm(30, generator=epoch_generator(2, 1)), epoch_generator(2, 1, 1)
    for step, (x, y) in enumerate(whole):
        index = perm[step * 8:(step + 1) * 8]
        expected = random_crop_flip(data.x_train[index], generator, padding=4)
        assert torch.equal(y, data.y_train[index]) and x.shape == (8, 3, 32, 32)
        assert torch.allclose(x, (expected.double() - data.mean) / data.std, rtol=0, atol=1e-12)
    assert len(whole) == 3 and float((whole[0][0] - (data.x_train[perm[:8]] - data.mean) / data.std).abs().max()) > 1
    for world in (2, 4):
        shares = [list(data.train_batches(1, 8, rank, world)) for rank in range(world)]
        for step, parts in enumerate(zip(*shares, strict=True)):
            assert torch.equal(torch.cat([x for x, _ in parts]), whole[step][0])
            assert torch.equal(torch.cat([y for _, y in parts]), whole[step][1])

def _write_jpegs(root, split, colours, size=(20, 12)):
    from PIL import Image
    for name, colour in colours.items():
        os.makedirs(root / split / name)
        for k in range(2):
            Image.new("RGB", size, colour).save(root / split / name / f"img{k}.JPEG", quality=95)


def test_image_folder_reads_tiny_jpegs(tmp_path):
    _write_jpegs(tmp_path, "train", {"b_blue": (0, 0, 200), "a_red": (200, 0, 0)})
    folder = ImageFolder(tmp_path, "train", resize=8)
    assert folder.classes == ["a_red", "b_blue"] and len(folder) == 4
    image, label = folder[0]
    assert image.shape == (3, 8, 8) and image.dtype == torch.uint8 and label == 0
    assert abs(int(image[0].float().mean()) - 200) < 12 and int(image[2].float().mean()) < 12  # red
    image, label = folder[3]
    assert label == 1 and abs(int(image[2].float().mean()) - 200) < 12
    with pytest.raises(FileNotFoundError, match="val"):
        ImageFolder(tmp_path, "val")
