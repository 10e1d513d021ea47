"""The repository's tooling files agree with each other.

pyproject.toml is the single source of dependencies; requirements/lock.txt and requirements/bench.txt are
generated from it by ``make lock``. These tests catch a dependency added to pyproject without re-locking,
a licence that does not match pyproject, and a Binder set-up that would not install the package.
"""
import os
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
LOCKED_EXTRAS = ("book", "test", "lint")       # LOCK_EXTRAS in the Makefile


def _pins(path):
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith(("#", "-")):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def _declared(extras, core):
    project = PYPROJECT["project"]
    deps = (list(project["dependencies"]) if core else []) + [
        d for e in extras for d in project["optional-dependencies"][e]]
    return [Requirement(d) for d in deps]


@pytest.mark.parametrize("lock, extras, core, on_top_of", [
    ("lock.txt", LOCKED_EXTRAS, True, None),
    ("bench.txt", ("bench",), False, "lock.txt"),
], ids=["lock", "bench"])
def test_every_declared_dependency_is_pinned_and_satisfies_pyproject(lock, extras, core, on_top_of):
    pins = _pins(ROOT / "requirements" / lock)
    if on_top_of:
        pins.update(_pins(ROOT / "requirements" / on_top_of))
    problems = []
    for req in _declared(extras, core):
        version = pins.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{req.name} is declared in pyproject.toml but not pinned in requirements/{lock}")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}=={version} in requirements/{lock} does not satisfy {req}")
    assert not problems, "run `make lock`:\n" + "\n".join(problems)


def test_the_lock_pins_torch_without_a_local_tag_and_names_the_cpu_index():
    text = (ROOT / "requirements" / "lock.txt").read_text(encoding="utf-8")
    assert re.search(r"^torch==\d+\.\d+\.\d+$", text, re.M), "torch must be pinned as torch==X.Y.Z"
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any("https://download.pytorch.org/whl/cpu" in line for line in header)
    # an index option in the lock would make every `pip install -r` contact that index
    assert not re.search(r"^\s*--?(extra-)?index", text, re.M)


def test_license_file_matches_pyproject():
    assert PYPROJECT["project"]["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "Copyright (c) 2026 the cscnb authors" in text


def test_binder_installs_the_lock_and_the_package():
    requirements = (ROOT / "binder" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert "-r ../requirements/lock.txt" in requirements
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in requirements
    post_build = ROOT / "binder" / "postBuild"
    assert os.access(post_build, os.X_OK), "binder/postBuild must be executable"
    assert re.search(r"pip install .*--no-deps.* \.$", post_build.read_text(encoding="utf-8"), re.M)
    assert re.fullmatch(r"python-3\.\d+", (ROOT / "binder" / "runtime.txt").read_text(encoding="utf-8").strip())
