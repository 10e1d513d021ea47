"""ResNet-18/34 and SDNet variants: shapes and parameter counts against an independent count."""
import pytest
import torch
import torch.nn as nn

from cscnb.models import resnet

BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def reference_count(depth, *, in_channels=3, n_classes=10, width=64, stem="cifar"):
    """Parameters of a basic-block ResNet by arithmetic on its layer list (He et al. 2016, table 1)."""
    k = 3 if stem == "cifar" else 7
    total = k * k * in_channels * width + 2 * width          # stem conv (no bias) + batch norm
    c_in = width
    for stage, n in enumerate(BLOCKS[depth]):
        c_out = width * 2 ** stage
        for i in range(n):
            total += 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out + 2 * c_out
            if c_in != c_out or (stage > 0 and i == 0):
                total += c_in * c_out + 2 * c_out                # 1×1 projection + batch norm
            c_in = c_out
    return total + c_in * n_classes + n_classes              # linear classifier


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("depth", [18, 34])
@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_resnet_counts_match_the_reference(depth, stem):
    n_classes = 10 if stem == "cifar" else 1000
    model = getattr(resnet, f"resnet{depth}")(num_classes=n_classes, stem=stem)
    assert count(model) == reference_count(depth, n_classes=n_classes, stem=stem)


def test_known_resnet_sizes():
    # the familiar sizes: ResNet-18 on CIFAR-10 ≈ 11.17 M; the ImageNet ResNet-18/34 of He et al.
    # have 11,689,512 and 21,797,672 parameters (the torchvision models' published counts)
    assert 11.16e6 < reference_count(18) < 11.18e6
    assert reference_count(18, n_classes=1000, stem="imagenet") == 11_689_512
    assert reference_count(34, n_classes=1000, stem="imagenet") == 21_797_672


def test_shapes_of_both_stems():
    torch.manual_seed(0)
    small = resnet.resnet18(width=4, num_classes=7)
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    big = resnet.resnet34(width=4, num_classes=5, stem="imagenet").eval()
    assert big(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    with pytest.raises(ValueError, match="stem"):
        resnet.ResNet(18, stem="tiny")
    with pytest.raises(ValueError, match="depth"):
        resnet.ResNet(50)
    with pytest.raises(ValueError, match="x must"):
        small(torch.randn(3, 32, 32))


def _csc_modules(model):
    from cscnb.nn.csc_layer import CSCLayer
    return [m for m in model.modules() if isinstance(m, CSCLayer)]


@pytest.mark.parametrize("depth", [18, 34])
def test_sdnet_replaces_the_stem_or_every_3x3_conv(depth):
    plain = getattr(resnet, f"resnet{depth}")(width=8)
    stem_only = getattr(resnet, f"sdnet{depth}")(width=8)
    every = getattr(resnet, f"sdnet{depth}_all")(width=8, lam=0.2, n_iter=3)
    n_3x3 = sum(1 for m in plain.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
    assert len(_csc_modules(stem_only)) == 1 and len(_csc_modules(every)) == n_3x3
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in every.modules())
    # a CSC layer's parameters are its dictionary (same shape as the conv weight) plus any extras it learns
    extra = sum(count(m) - m.weight.numel() for m in _csc_modules(every))
    assert count(stem_only) == count(plain) + sum(count(m) - m.weight.numel() for m in _csc_modules(stem_only))
    assert count(every) == count(plain) + extra
    assert all(m.weight.shape == (8, 3, 3, 3) for m in _csc_modules(stem_only))


def test_sdnet_runs_forward_and_backward():
    torch.manual_seed(0)
    model = resnet.sdnet18(width=4, num_classes=3)
    out = model(torch.randn(2, 3, 8, 8))
    out.sum().backward()
    assert out.shape == (2, 3) and _csc_modules(model)[0].weight.grad is not None
    assert resnet.sdnet18(width=4, stem="imagenet")(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_stems_follow_the_authors_sdnet_has_no_relu_after_the_batch_norm():
    from cscnb.nn.csc_layer import CSCLayer
    kinds = lambda model: [type(m) for m in model.stem]  # noqa: E731
    assert kinds(resnet.resnet18(width=4)) == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert kinds(resnet.resnet18(width=4, stem="imagenet")) == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d]
    for build in (resnet.sdnet18, resnet.sdnet18_all, resnet.sdnet34):
        assert kinds(build(width=4)) == [CSCLayer, nn.BatchNorm2d]
        assert kinds(build(width=4, stem="imagenet")) == [CSCLayer, nn.BatchNorm2d, nn.MaxPool2d]
        assert kinds(build(width=4, stem_relu=True)) == [CSCLayer, nn.BatchNorm2d, nn.ReLU]
    with pytest.raises(TypeError, match="stem_relu"):
        resnet.resnet18(stem_relu="no")


def test_the_factory_passes_the_configs_csc_settings_to_every_csc_layer():
    from cscnb.models.factory import build_model, csc_layer_kwargs
    from cscnb.nn.csc_layer import CSCLayer
    from cscnb.train.config import preset_config

    class Data:
        in_channels, n_classes, dim = 3, 10, 2
    config = preset_config("sdnet18-all-cifar10", data_dir="-", width=4, csc_mu=0.25, csc_nonneg=False,
                           csc_backward="implicit", csc_lam=0.3, csc_n_iter=3)
    kwargs, unsupported = csc_layer_kwargs(config)
    assert (kwargs["mu"], kwargs["nonneg"], kwargs["backward"], kwargs["synthesis"]) == \
        (0.25, False, "implicit", "conv_transpose2d")
    layers = [m for m in build_model(config, Data).modules() if isinstance(m, CSCLayer)]
    assert len(layers) == 17 and all(float(m.lam.max()) == pytest.approx(0.3) and m.n_iter == 3 for m in layers)
    for argument, value in kwargs.items():  # every argument the layer accepted is what the layer holds
        assert all(getattr(m, argument) == value for m in layers if hasattr(m, argument)), argument
    # a layer without an argument may only miss settings it follows anyway, else they are reported
    assert all(not item.startswith(("csc_mu", "csc_nonneg", "csc_backward", "csc_synthesis")) for item in unsupported)
