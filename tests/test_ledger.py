"""The claims ledger generator (_ext/cscnb_ledger.py) on small notebooks written here, not the real chapters.

Checks the tagging convention (what is read, and that every broken tag stops the build with a message
naming the cell), the page's counts, links and status lines (from a JUnit XML like the one ``make nbval``
writes), and, with a real Sphinx build of a two-page book, that the page's cell links land on the
``cell-N`` anchors of the chapter page.
"""
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "_ext"))
ledger = importlib.import_module("cscnb_ledger")

THEOREMS = """# A small chapter

:::{prf:theorem} Soft threshold
:label: thm-demo-soft

The soft threshold is the prox of $t|a|$.
:::

```{prf:lemma} A lemma in a backtick fence
---
label: lem-demo-yaml
---
Text.
```

:::{prf:proof}
A proof is not a result.
:::
"""


def claims(*entries):
    return {"cscnb": {"claims": list(entries)}}


def write_chapter(path, code_metadata, markdown=THEOREMS):
    """A notebook: one markdown cell, then one code cell per metadata dict (code cells 1, 2, ...)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(markdown)]
    for i, metadata in enumerate(code_metadata, 1):
        cell = nbformat.v4.new_code_cell(f"print({i})")
        cell.metadata.update(metadata)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{i}\n")]
        cell.execution_count = i
        nb.cells.append(cell)
        nb.cells.append(nbformat.v4.new_markdown_cell(f"Text after code cell {i}."))
    nbformat.write(nb, path)
    return path


TAGGED = [
    {},
    claims({"label": "thm-demo-soft", "role": "derive"}),
    claims({"label": "thm-demo-soft", "role": "check", "against": "brute force on a grid"},
           {"label": "claim-demo-robust", "role": "measure", "statement": "Unrolling helps under noise.",
            "against": "5 seeds, mean +- sd"}),
    {"tags": ["remove-cell"], **claims({"label": "lem-demo-yaml", "role": "check", "against": "exact enumeration"})},
]


@pytest.fixture
def chapter(tmp_path):
    (tmp_path / "chapters").mkdir()
    return ledger.read_chapter(write_chapter(tmp_path / "chapters" / "demo.ipynb", TAGGED), "chapters/demo")


def test_reads_theorem_like_directives_and_tagged_cells(chapter):
    assert chapter.title == "A small chapter"
    by_label = {r.label: r for r in chapter.results}
    assert [r.label for r in chapter.results] == ["thm-demo-soft", "lem-demo-yaml", "claim-demo-robust"]
    soft, lemma, claim = by_label["thm-demo-soft"], by_label["lem-demo-yaml"], by_label["claim-demo-robust"]
    assert (soft.kind, soft.title, soft.derive, soft.check) == ("theorem", "Soft threshold", [2],
                                                                [(3, "brute force on a grid")])
    assert (lemma.kind, lemma.check) == ("lemma", [(4, "exact enumeration")])
    assert (claim.kind, claim.title, claim.check) == ("measured claim", "Unrolling helps under noise.",
                                                      [(3, "5 seeds, mean +- sd")])
    assert chapter.hidden == {4}


def test_page_has_counts_links_and_against(chapter):
    text = ledger.build_ledger_markdown([chapter], run=None, built_commit="0123456789abcdef")
    counts = dict(re.findall(r"\* - (.+)\n  - (\d+)", text))
    assert counts == {"Theorem-like results (theorems, propositions, lemmas, corollaries)": "2",
                      "… with at least one symbolic derivation": "1", "… with at least one numeric check": "2",
                      "Measured claims": "1"}
    assert "{prf:ref}`thm-demo-soft`: Soft threshold (`thm-demo-soft`)" in text
    assert "{ref}`cell 2 <cscnb-cell-chapters-demo-2>`" in text
    assert "{ref}`cell 3 <cscnb-cell-chapters-demo-3>`: brute force on a grid" in text
    assert "Measured claim: Unrolling helps under noise. (`claim-demo-robust`)" in text
    assert "cell 4 (not shown on the page): exact enumeration" in text     # a removed cell is not linked
    assert "Cells of {doc}`chapters/demo.ipynb </chapters/demo>`:" in text and "Built at commit `0123456789`" in text
    assert text.count("not re-run in this build (stored outputs)") == 3


def write_run(folder, commit, outcomes):
    cases = "".join(
        f'<testcase classname="chapters.demo.ipynb" name="Cell {n - 1}" time="0.1">'
        + {"passed": "", "failed": '<failure message="Cell outputs differ">diff</failure>',
           "skipped": '<skipped message="nbval-skip"/>'}[o] + "</testcase>" for n, o in outcomes.items())
    (folder / "nbval-junit.xml").write_text(f'<?xml version="1.0"?><testsuites><testsuite name="pytest">{cases}'
                                            "</testsuite></testsuites>")
    (folder / "nbval-run.json").write_text(json.dumps({"commit": commit, "dirty": False}))
    return ledger.load_nbval_run(folder / "nbval-junit.xml", folder / "nbval-run.json")


def test_status_comes_from_the_strict_nbval_run_of_the_built_commit(chapter, tmp_path):
    soft, lemma, claim = chapter.results
    commit = "feedc0ffee" * 4
    run = write_run(tmp_path, commit, {1: "passed", 2: "passed", 3: "passed", 4: "failed"})
    assert ledger.status(chapter, soft, run, commit) == "passed in strict nbval at feedc0ffee"
    assert ledger.status(chapter, lemma, run, commit) == "**FAILED** in strict nbval at feedc0ffee (cell 4)"
    assert ledger.status(chapter, claim, run, commit) == "passed in strict nbval at feedc0ffee"
    # a run of another commit, or none, says the stored outputs were not re-run
    assert ledger.status(chapter, soft, run, "0" * 40) == "not re-run in this build (stored outputs)"
    assert ledger.status(chapter, soft, None, commit) == "not re-run in this build (stored outputs)"
    assert ledger.status(chapter, soft, None, commit, executed=True).startswith("executed without error")
    skipped = write_run(tmp_path, commit, {2: "passed", 3: "skipped"})
    assert ledger.status(chapter, soft, skipped, commit) == "skipped in strict nbval at feedc0ffee (cell 3)"
    untagged = ledger.Result("thm-x", "theorem", "x")
    assert ledger.status(chapter, untagged, run, commit) == "no tagged cell"
    assert "Status: from the strict-nbval run at `feedc0ffee`." in ledger.build_ledger_markdown([chapter], run, commit)
    assert "`feedc0ffee` with uncommitted changes." in ledger.build_ledger_markdown([chapter], run, commit,
                                                                                   built_dirty=True)


@pytest.mark.parametrize("metadata, message", [
    (claims({"label": "thm-elsewhere", "role": "derive"}), "not the :label: of a theorem-like prf directive"),
    (claims({"label": "thm-demo-soft", "role": "check"}), "needs a non-empty string 'against'"),
    (claims({"label": "claim-x", "role": "measure", "against": "3 seeds"}), "needs a non-empty string 'statement'"),
    (claims({"label": "claim-x", "role": "measure", "statement": "s"}), "needs a non-empty string 'against'"),
    (claims({"label": "robust", "role": "measure", "statement": "s", "against": "a"}), "must start with 'claim-'"),
    (claims({"label": "thm-demo-soft", "role": "measure", "statement": "s", "against": "a"}),
     "must start with 'claim-'"),
    (claims({"label": "thm-demo-soft", "role": "verify"}), "each claim needs a role"),
    (claims({"label": "thm-demo-soft", "role": "check", "agianst": "typo"}), "unknown key(s) ['agianst']"),
    (claims({"role": "derive"}), "derive entry without a label"),
    ({"cscnb": ["thm-demo-soft"]}, 'metadata "cscnb" must be'),
])
def test_a_broken_tag_stops_the_build_naming_the_cell(tmp_path, metadata, message):
    path = write_chapter(tmp_path / "demo.ipynb", [{}, metadata])
    with pytest.raises(ledger.LedgerError, match=re.escape(message)) as info:
        ledger.read_chapter(path, "demo")
    assert "demo.ipynb, cell 2" in str(info.value)


def test_a_theorem_without_label_stops_the_build(tmp_path):
    path = write_chapter(tmp_path / "demo.ipynb", [{}], markdown=":::{prf:theorem} Unlabelled\nText.\n:::\n")
    with pytest.raises(ledger.LedgerError, match="has no :label:"):
        ledger.read_chapter(path, "demo")


def test_two_statements_for_one_measured_claim_stop_the_build(tmp_path):
    entry = {"label": "claim-x", "role": "measure", "against": "3 seeds"}
    path = write_chapter(tmp_path / "demo.ipynb", [claims({**entry, "statement": "A."}),
                                                   claims({**entry, "statement": "B."})])
    with pytest.raises(ledger.LedgerError, match="has two statements"):
        ledger.read_chapter(path, "demo")


CONF = """
import sys
sys.path.insert(0, {ext!r})
extensions = ["myst_nb", "sphinx_proof", "cscnb_ledger"]
nb_execution_mode = "off"
myst_enable_extensions = ["colon_fence", "dollarmath"]
exclude_patterns = ["_build"]
html_theme = "basic"
"""


def test_sphinx_build_links_ledger_cells_to_cell_anchors(tmp_path):
    """A real (small) Sphinx build, warnings as errors: the ledger's cell links resolve to cell-N ids."""
    src = tmp_path / "src"
    (src / "chapters").mkdir(parents=True)
    (src / "conf.py").write_text(CONF.format(ext=str(ROOT / "_ext")))
    (src / "index.md").write_text("# Book\n\n```{toctree}\nchapters/demo\nledger\n```\n")
    write_chapter(src / "chapters" / "demo.ipynb", TAGGED)
    out = tmp_path / "html"
    build = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-W", "-n", "-q", str(src), str(out)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    page = (out / "ledger.html").read_text(encoding="utf-8")
    chapter = (out / "chapters" / "demo.html").read_text(encoding="utf-8")
    links = set(re.findall(r'href="chapters/demo\.html#([^"]+)"', page))
    assert links == {"thm-demo-soft", "lem-demo-yaml", "cell-2", "cell-3"}, links
    for anchor in links:
        assert f'id="{anchor}"' in chapter, f"no #{anchor} on the chapter page"
    # every rendered code cell has its anchor (cell 4 is removed from the page)
    assert re.findall(r'<div class="cell docutils container" id="(cell-\d+)"', chapter) == ["cell-1", "cell-2",
                                                                                            "cell-3"]
