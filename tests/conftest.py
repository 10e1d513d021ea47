"""Shared pytest configuration and fixtures.

Fixtures used by several test files: ``float64`` (float64 as the default dtype and torch's global
generator seeded, both restored afterwards) and ``gaussian_dictionary`` (a factory of seeded
dictionaries with unit-norm Gaussian atoms).

The ``site`` marker labels the browser test of the rendered book (tests/test_site.py). It needs
the built site (``make html-strict``) and Chromium, so it runs only when selected explicitly —
``make site-test`` runs ``pytest -m site`` after the strict book build — and never as part of the
fast unit suite.
"""
import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "site: browser test of the built site in _build/html (run with `make site-test`)")
    config.addinivalue_line(
        "markers", "cuda: needs a CUDA device (skips without one; `make gpu-check` runs `pytest -m cuda`)")


def pytest_collection_modifyitems(config, items):
    # Only an explicit marker expression (e.g. `-m site`) selects the browser test; a bare
    # `pytest tests` stays the fast unit suite and says how to run the rest.
    if config.getoption("markexpr"):
        return
    skip = pytest.mark.skip(reason="browser test of the built site: run `make site-test` (pytest -m site)")
    for item in items:
        if "site" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def float64():
    """float64 as torch's default dtype and its global generator seeded with 0; the dtype is restored after."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def gaussian_dictionary():
    """Factory ``make(n, m, seed=0)``: an ``(n, m)`` float64 matrix of i.i.d. Gaussian columns scaled to unit norm."""
    def make(n: int, m: int, seed: int = 0) -> torch.Tensor:
        weight = torch.randn(n, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        return weight / weight.norm(dim=0)
    return make
