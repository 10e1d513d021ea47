"""Shared pytest configuration.

The ``site`` marker labels the browser test of the rendered book (tests/test_site.py). It needs
the built site (``make html-strict``) and Chromium, so it runs only when selected explicitly —
``make site-test`` runs ``pytest -m site`` after the strict book build — and never as part of the
fast unit suite.
"""
import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "site: browser test of the built site in _build/html (run with `make site-test`)")


def pytest_collection_modifyitems(config, items):
    # Only an explicit marker expression (e.g. `-m site`) selects the browser test; a bare
    # `pytest tests` stays the fast unit suite and says how to run the rest.
    if config.getoption("markexpr"):
        return
    skip = pytest.mark.skip(reason="browser test of the built site: run `make site-test` (pytest -m site)")
    for item in items:
        if "site" in item.keywords:
            item.add_marker(skip)
