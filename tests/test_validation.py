"""cscnb.core.validation: one convention for bad input across the package.

Wrong type -> TypeError, wrong value -> ValueError, and the message names the argument and what was
expected; bool is never an int or a number.
"""
import math

import numpy as np
import pytest
import torch

import cscnb
from cscnb.core import validation as v


# ------------------------------------------------------------------------------------------ the checks
@pytest.mark.parametrize("check, good, expected", [
    (v.positive_int, 3, 3), (v.positive_int, np.int64(2), 2), (v.nonneg_int, 0, 0),
    (v.positive_number, 0.5, 0.5), (v.positive_number, 2, 2.0), (v.nonneg_number, 0, 0.0),
])
def test_good_values_come_back_normalised(check, good, expected):
    result = check(good, "arg")
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize("check, bad, error, message", [
    (v.positive_int, 0, ValueError, "n must be a positive int, got 0"),
    (v.positive_int, -3, ValueError, "n must be a positive int, got -3"),
    (v.positive_int, True, TypeError, "n must be a positive int, got bool"),
    (v.positive_int, 2.0, TypeError, "n must be a positive int, got float"),
    (v.positive_int, "2", TypeError, "n must be a positive int, got str"),
    (v.nonneg_int, -1, ValueError, "n must be a non-negative int, got -1"),
    (v.nonneg_int, False, TypeError, "n must be a non-negative int, got bool"),
    (v.positive_number, 0.0, ValueError, "n must be a positive finite number, got 0.0"),
    (v.positive_number, math.inf, ValueError, "n must be a positive finite number, got inf"),
    (v.positive_number, math.nan, ValueError, "n must be a positive finite number, got nan"),
    (v.positive_number, True, TypeError, "n must be a positive number, got bool"),
    (v.positive_number, "1", TypeError, "n must be a positive number, got str"),
    (v.nonneg_number, -0.5, ValueError, "n must be a finite non-negative number, got -0.5"),
    (v.nonneg_number, None, TypeError, "n must be a non-negative number, got NoneType"),
    (v.check_bool, 1, TypeError, "n must be a bool, got int"),
])
def test_bad_values_raise_by_the_convention(check, bad, error, message):
    with pytest.raises(error, match=message):
        check(bad, "n")


def test_ranges_choices_and_tuples():
    assert v.check_int(5, "k", minimum=1, maximum=5) == 5
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 5\], got 6"):
        v.check_int(6, "k", minimum=1, maximum=5)
    assert v.check_number(0.5, "p", minimum=0, maximum=1, open_minimum=True) == 0.5
    with pytest.raises(ValueError, match=r"p must be a finite number in \(0, 1\], got 0.0"):
        v.check_number(0, "p", minimum=0, maximum=1, open_minimum=True)
    with pytest.raises(TypeError, match=r"p must be a finite number in \(0, 1\], got bool"):
        v.check_number(True, "p", minimum=0, maximum=1, open_minimum=True)
    assert v.check_choice("fista", "method", ("ista", "fista")) == "fista"
    for bad in ("adam", None, 1):  # a value outside the choices is a wrong value, whatever its type
        with pytest.raises(ValueError, match=r"method must be one of \('ista', 'fista'\)"):
            v.check_choice(bad, "method", ("ista", "fista"))
    assert v.pair(3, "kernel_size", 1) == (3, 3) and v.pair([2, 1], "stride", 1) == (2, 1)
    assert v.int_tuple(2, 3, "padding") == (2, 2, 2)
    with pytest.raises(ValueError, match="kernel_size must be an int or a tuple of 2 ints >= 1, got"):
        v.pair((3,), "kernel_size", 1)
    with pytest.raises(ValueError, match="stride must be an int or a tuple of 2 ints >= 1, got"):
        v.pair(0, "stride", 1)
    with pytest.raises(TypeError, match="kernel_size must be an int or a tuple of 2 ints"):
        v.pair((3, 3.0), "kernel_size", 1)
    with pytest.raises(TypeError, match="kernel_size"):
        v.pair(True, "kernel_size", 1)


def test_thresholds_and_dtypes():
    v.check_threshold(0.0, "t")
    v.check_threshold(torch.tensor([0.0, 1.0]), "t")
    with pytest.raises(ValueError, match="t must be non-negative"):
        v.check_threshold(torch.tensor([-1.0]), "t")
    with pytest.raises(ValueError, match="t must be finite"):
        v.check_threshold(math.inf, "t")
    with pytest.raises(TypeError, match="t must be a number or a torch.Tensor, got bool"):
        v.check_threshold(True, "t")
    for tensor in (torch.tensor([True]), torch.tensor([1, 2])):
        with pytest.raises(TypeError, match="t must be a floating-point tensor"):
            v.check_threshold(tensor, "t")
    assert v.check_float_dtype(torch.float32) is torch.float32
    with pytest.raises(TypeError, match="dtype must be a floating-point torch.dtype"):
        v.check_float_dtype(torch.int64)


# ------------------------------------------------------------------- the convention across the package
def _conv_weight():
    return torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("call, error, name", [
    # bool is not an int, and not a number
    (lambda: cscnb.SparseCodingLinear(4, 3, n_iter=True), TypeError, "n_iter"),
    (lambda: cscnb.CSCLayer(1, 2, 3, n_iter=True), TypeError, "n_iter"),
    (lambda: cscnb.ConvDictionary(_conv_weight(), stride=True), TypeError, "stride"),
    (lambda: cscnb.soft_threshold(torch.ones(2), True), TypeError, "t"),
    (lambda: cscnb.resnet18(num_classes=True), TypeError, "num_classes"),
    (lambda: cscnb.NetworkConfig(width=True), TypeError, "width"),
    (lambda: cscnb.TrainConfig(epochs=True), TypeError, "epochs"),
    # a value of the wrong type
    (lambda: cscnb.ConvDictionary(_conv_weight(), padding="same"), TypeError, "padding"),
    (lambda: cscnb.mutual_coherence([[1.0, 0.0], [0.0, 1.0]]), TypeError, "weight"),
    (lambda: cscnb.planted_sparse_codes(cscnb.LinearDictionary(torch.eye(3)), 2.0, 1), TypeError, "n"),
    (lambda: cscnb.ResCSCBlock(3, dim="2"), TypeError, "dim"),
    (lambda: cscnb.nn.theorem_thresholds(0.1, 2.0, 1.0, 3), TypeError, "sparsity"),
    (lambda: cscnb.nn.empirical_rate([1.0, 0.5]), TypeError, "errors"),
    (lambda: cscnb.mlcsc.thresholding_interval(0.1, 1.5, 1.0, 1.0), TypeError, "sparsity"),
    (lambda: cscnb.theory.restricted_min_eigenvalue_bruteforce(torch.eye(3, dtype=torch.float64), 1.0),
     TypeError, "k"),
    (lambda: cscnb.profiling.csc_layer_floor(1.0, 1.0, 2.0), TypeError, "n_iter"),
    (lambda: cscnb.profiling.training_hours(1.0, 1.0, train_images="many", test_images=1, epochs=1,
                                            flops_per_second=1.0), TypeError, "train_images"),
    # a value of the right type that is not allowed
    (lambda: cscnb.MSDCSCBlock(3, dilations=()), ValueError, "dilations"),
    (lambda: cscnb.nn.conv_operator_norm(torch.ones(3, 3)), ValueError, "weight"),
    (lambda: cscnb.SparseCodingConv2d(1, 2, kernel_size=(3,)), ValueError, "kernel_size"),
    (lambda: cscnb.ml_fista([cscnb.LinearDictionary(torch.eye(2, dtype=torch.float64))],
                            torch.ones(1, 2, dtype=torch.float64), [0.1], tol=math.inf), ValueError, "tol"),
    (lambda: cscnb.train.fit(torch.nn.Linear(2, 2), torch.ones(4, 2), torch.zeros(4, dtype=torch.long),
                                  lr=math.inf), ValueError, "lr"),
])
def test_the_convention_across_the_package(call, error, name):
    with pytest.raises(error, match=rf"\b{name}\b"):
        call()
