"""Notebook hygiene: every committed chapter is a clean restart-and-run-all."""
import json
import re
from pathlib import Path

import pytest

CHAPTERS = sorted((Path(__file__).resolve().parent.parent / "chapters").glob("*.ipynb"))


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_chapters():
    assert len(CHAPTERS) >= 5, f"expected the five chapters of Part I, found {[p.name for p in CHAPTERS]}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_is_clean_restart_and_run_all(path):
    nb = _load(path)
    assert nb["metadata"]["kernelspec"]["name"] == "python3", "kernel must be python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "a chapter without code cells checks nothing"
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), f"execution counts must run 1..n, got {counts}"
    for i, cell in enumerate(code, 1):
        src = "".join(cell["source"])
        assert not src.rstrip().endswith(";"), f"cell {i}: trailing ';' does not hide output under nbval"
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"cell {i} has an error output"
            if out["output_type"] == "stream":
                assert out["name"] == "stdout", f"cell {i} writes to stderr: {''.join(out['text'])[:200]}"
            data = out.get("data", {})
            assert "image/svg+xml" not in data, f"cell {i}: figures must be PNG, not SVG"
            text = "".join(data.get("text/plain", "")) + "".join(out.get("text", ""))
            assert not re.search(r" at 0x[0-9a-f]{6,}", text), f"cell {i}: output has a memory address"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_checks_its_claims(path):
    """Every chapter asserts its claims and derives something with sympy, and shows a figure."""
    nb = _load(path)
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "import sympy" in code or "from sympy" in code, "chapter derives nothing with sympy"
    assert "import cscnb" in code or "from cscnb" in code, "chapter checks nothing against cscnb"
    assert code.count("assert") >= 3, "chapter asserts fewer than three claims"
    assert "{prf:theorem}" in text and "{prf:proof}" in text, "chapter states no theorem with proof"
    assert "{cite" in text, "chapter cites nothing"
    pngs = sum("image/png" in o.get("data", {}) for c in nb["cells"] if c["cell_type"] == "code"
               for o in c.get("outputs", []))
    assert pngs >= 1, "chapter has no figure"
