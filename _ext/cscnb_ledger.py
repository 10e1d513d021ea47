"""The claims ledger: a page, generated at every build, listing each result of the book and the checks behind it.

Loaded from _config.yml (``sphinx: local_extensions``). On ``builder-inited`` it reads every chapter
notebook of the table of contents and writes ``ledger.md`` into the source directory (git-ignored; the
page is derived, never typed): every ``{prf:theorem}``, ``{prf:proposition}``, ``{prf:lemma}`` and
``{prf:corollary}`` of the chapters and every measured claim, with its label, kind, title, chapter,
the code cells that derive it symbolically, the cells that check it numerically and against what, and
its status in the last strict-nbval run. On ``doctree-read`` it gives every rendered code cell of a
chapter the anchor ``cell-N`` (N counts the notebook's code cells from 1), which the page links to.

Tagging convention. A code cell's metadata may hold::

    "cscnb": {"claims": [
        {"label": "thm-ch05-fista-rate", "role": "derive"},
        {"label": "thm-ch05-fista-rate", "role": "check",
         "against": "a KKT-certified reference solve (20000 FISTA iterations)"},
        {"label": "claim-ch05-robustness", "role": "measure",
         "statement": "one-line statement of the measured claim",
         "against": "what it is compared with, e.g. 5 seeds, mean +- sd, lambda chosen on validation"}
    ]}

* ``derive``: the cell derives the result symbolically (SymPy).
* ``check``: the cell checks it numerically against the independent computation named in ``against``.
* ``measure``: the cell declares a measured (experimental) claim; its label starts with ``claim-`` and it
  has no prf directive; ``statement`` and ``against`` are required.

The label of a ``derive`` or ``check`` entry must be the ``:label:`` of a theorem-like prf directive of
the same chapter. Anything else (an unknown label, role or key, a missing ``against`` or ``statement``, a
measured claim whose label does not start with ``claim-`` or that two chapters declare) stops the build
with a message naming the chapter and the cell. Cells are named by their 1-based index among the
notebook's code cells ("cell 12"), the numbering nbval uses (from 0) and the ``cell-N`` anchors follow.

Status. ``make nbval`` writes ``_build/nbval-junit.xml`` (one test case per code cell) and
``_build/nbval-run.json`` (the commit it ran at). A result whose tagged cells all passed at the commit
being built is "passed in strict nbval at <commit>"; a failed cell makes it "FAILED"; without a run of
this commit it is "not re-run in this build (stored outputs)", or, in ``make book`` (which executes the
chapters and sets ``CSCNB_LEDGER_EXECUTED=1``), "executed without error in this build".
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

LEDGER_DOCNAME = "ledger"
THEOREM_KINDS = ("theorem", "proposition", "lemma", "corollary")
ROLE_KEYS = {"derive": {"label", "role"}, "check": {"label", "role", "against"},
             "measure": {"label", "role", "statement", "against"}}
REMOVED_TAGS = {"remove-cell", "remove_cell"}
DIRECTIVE = re.compile(r"^[ \t]*(?P<fence>`{3,}|:{3,})\{prf:(?P<kind>\w+)\}[ \t]*(?P<title>.*?)[ \t]*$")
OPTION = re.compile(r"^[ \t]*:(?P<key>[\w-]+):[ \t]*(?P<value>.*?)[ \t]*$")
YAML_LABEL = re.compile(r"^[ \t]*label:[ \t]*(?P<value>\S+)[ \t]*$")


class LedgerError(ValueError):
    """A chapter's claims metadata breaks the tagging convention (see the module docstring)."""


@dataclass
class Result:
    label: str
    kind: str                       # theorem, proposition, lemma, corollary, or "measured claim"
    title: str                      # the directive's title, or the measured claim's statement
    derive: list = field(default_factory=list)     # code-cell numbers
    check: list = field(default_factory=list)      # (code-cell number, against)

    @property
    def cells(self):
        return sorted(set(self.derive) | {n for n, _ in self.check})


@dataclass
class Chapter:
    docname: str
    title: str
    results: list                   # theorem-like results in order, then measured claims
    hidden: set = field(default_factory=set)       # code cells the page does not render


def code_cells(nb):
    """[(code-cell number from 1, cell)] of a notebook (a dict as in the .ipynb JSON)."""
    return list(enumerate((c for c in nb["cells"] if c["cell_type"] == "code"), 1))


def _source(cell):
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


def _theorems(nb, where):
    """Theorem-like prf directives of the markdown cells: [(label, kind, title)]."""
    found = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        lines = _source(cell).splitlines()
        for i, line in enumerate(lines):
            match = DIRECTIVE.match(line)
            if not match or match["kind"] not in THEOREM_KINDS:
                continue
            label, rest = None, lines[i + 1:]
            if rest and rest[0].strip() == "---":          # YAML option block
                for opt in rest[1:]:
                    if opt.strip() == "---":
                        break
                    yaml_label = YAML_LABEL.match(opt)
                    if yaml_label:
                        label = yaml_label["value"]
            else:
                for opt in rest:
                    option = OPTION.match(opt)
                    if not option:
                        break
                    if option["key"] == "label":
                        label = option["value"]
            if not label:
                raise LedgerError(f"{where}: the {{prf:{match['kind']}}} {match['title']!r} has no :label: "
                                  "(the ledger links every result by its label)")
            found.append((label, match["kind"], match["title"]))
    return found


def _chapter_title(nb, docname):
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in _source(cell).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return docname


def _text(entry, key, where):
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise LedgerError(f"{where}: {entry.get('role')} entry for {entry.get('label')!r} needs a non-empty "
                          f"string {key!r}")
    return " ".join(value.split())


def read_chapter(path, docname):
    """Parse one chapter notebook into a :class:`Chapter`; raise :class:`LedgerError` on a bad tag."""
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    results, claims = {}, {}
    for label, kind, title in _theorems(nb, str(path)):
        if label in results:
            raise LedgerError(f"{path}: two theorem-like directives have the label {label!r}")
        results[label] = Result(label, kind, title)
    hidden = set()
    for number, cell in code_cells(nb):
        where = f"{path}, cell {number}"
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & REMOVED_TAGS or {"remove-input", "remove-output"} <= tags:
            hidden.add(number)
        meta = cell.get("metadata", {}).get("cscnb")
        if meta is None:
            continue
        if not isinstance(meta, dict) or not isinstance(meta.get("claims"), list) or set(meta) != {"claims"}:
            raise LedgerError(f'{where}: metadata "cscnb" must be {{"claims": [...]}}, got {meta!r}')
        for entry in meta["claims"]:
            if not isinstance(entry, dict) or entry.get("role") not in ROLE_KEYS:
                raise LedgerError(f"{where}: each claim needs a role in {sorted(ROLE_KEYS)}, got {entry!r}")
            role, label = entry["role"], entry.get("label")
            if not isinstance(label, str) or not label:
                raise LedgerError(f"{where}: {role} entry without a label: {entry!r}")
            unknown = set(entry) - ROLE_KEYS[role]
            if unknown:
                raise LedgerError(f"{where}: {role} entry for {label!r} has unknown key(s) {sorted(unknown)}; "
                                  f"allowed: {sorted(ROLE_KEYS[role])}")
            if role == "measure":
                statement, against = _text(entry, "statement", where), _text(entry, "against", where)
                if not label.startswith("claim-"):
                    raise LedgerError(f"{where}: measured claim label {label!r} must start with 'claim-'")
                if label in results:
                    raise LedgerError(f"{where}: {label!r} is a theorem label, not a measured claim")
                claim = claims.setdefault(label, Result(label, "measured claim", statement))
                if claim.title != statement:
                    raise LedgerError(f"{where}: measured claim {label!r} has two statements: "
                                      f"{claim.title!r} and {statement!r}")
                claim.check.append((number, against))
                continue
            if label not in results:
                known = ", ".join(results) or "none"
                raise LedgerError(f"{where}: {role} entry for {label!r}, which is not the :label: of a "
                                  f"theorem-like prf directive of this chapter (its labels: {known})")
            if role == "derive":
                results[label].derive.append(number)
            else:
                results[label].check.append((number, _text(entry, "against", where)))
    return Chapter(docname, _chapter_title(nb, docname), list(results.values()) + list(claims.values()), hidden)


@dataclass
class NbvalRun:
    commit: str | None
    dirty: bool
    outcomes: dict                  # (docname, code-cell number from 1) -> "passed" | "failed" | "skipped"


def load_nbval_run(xml_path, run_path):
    """The strict-nbval run of ``make nbval`` (JUnit XML + commit), or None where there is none."""
    xml_path, run_path = Path(xml_path), Path(run_path)
    if not xml_path.is_file():
        return None
    try:
        info = json.loads(run_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    outcomes = {}
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        classname, match = case.get("classname", ""), re.fullmatch(r"Cell (\d+)", case.get("name", ""))
        if not match or not classname.endswith(".ipynb"):
            continue
        docname = classname[: -len(".ipynb")].replace(".", "/")
        failed = case.find("failure") is not None or case.find("error") is not None
        outcome = "failed" if failed else "skipped" if case.find("skipped") is not None else "passed"
        outcomes[docname, int(match[1]) + 1] = outcome
    return NbvalRun(info.get("commit") or None, bool(info.get("dirty")), outcomes)


def _short(commit):
    return commit[:10] if commit else "an unknown commit"


def status(chapter, result, run, built_commit, executed=False):
    """The status line of one result (see the module docstring)."""
    cells = result.cells
    if not cells:
        return "no tagged cell"
    current = run is not None and built_commit is not None and run.commit == built_commit
    outcomes = {n: run.outcomes.get((chapter.docname, n)) for n in cells} if current else {}
    if not current or None in outcomes.values():
        if executed:
            return "executed without error in this build (outputs not compared by strict nbval)"
        return "not re-run in this build (stored outputs)"
    where = f"at {_short(run.commit)}" + (" with uncommitted changes" if run.dirty else "")
    failed = [n for n, o in outcomes.items() if o == "failed"]
    if failed:
        return f"**FAILED** in strict nbval {where} (cell {', '.join(map(str, failed))})"
    skipped = [n for n, o in outcomes.items() if o == "skipped"]
    if skipped:
        return f"skipped in strict nbval {where} (cell {', '.join(map(str, skipped))})"
    return f"passed in strict nbval {where}"


def cell_label(docname, number):
    """The Sphinx label of code cell ``number`` of a chapter (anchor ``cell-N`` on its page)."""
    return f"cscnb-cell-{docname.replace('/', '-')}-{number}".lower()


def _cell_ref(chapter, number):
    if number in chapter.hidden:
        return f"cell {number} (not shown on the page)"
    return f"{{ref}}`cell {number} <{cell_label(chapter.docname, number)}>`"


def build_ledger_markdown(chapters, run=None, built_commit=None, executed=False, built_dirty=False):
    """The MyST source of the ledger page for parsed chapters (list of :class:`Chapter`)."""
    theorems = [r for c in chapters for r in c.results if r.kind in THEOREM_KINDS]
    measured = [r for c in chapters for r in c.results if r.kind not in THEOREM_KINDS]
    if run is None:
        source = "no strict-nbval run was found (`make nbval` writes one)"
    elif run.commit != built_commit or built_commit is None:
        source = f"the last strict-nbval run was at `{_short(run.commit)}`, not at this commit, so it is not used"
    else:
        source = f"from the strict-nbval run at `{_short(run.commit)}`"
    out = [
        "# Claims ledger", "",
        "Every theorem, proposition, lemma and corollary of the book, and every measured claim, with the code "
        "cells that derive it symbolically and those that check it numerically, against an independent "
        "computation. This page is generated at every build from the chapters' cell metadata; nothing on it is "
        "typed by hand.", "",
        f"Built at commit `{_short(built_commit)}`{' with uncommitted changes' if built_dirty else ''}. "
        f"Status: {source}.", "",
        "```{list-table}", ":header-rows: 1", ":class: cscnb-ledger-counts", "",
        "* - Results", "  - Count",
        f"* - Theorem-like results (theorems, propositions, lemmas, corollaries)\n  - {len(theorems)}",
        f"* - … with at least one symbolic derivation\n  - {sum(bool(r.derive) for r in theorems)}",
        f"* - … with at least one numeric check\n  - {sum(bool(r.check) for r in theorems)}",
        f"* - Measured claims\n  - {len(measured)}",
        "```", "",
    ]
    for chapter in chapters:
        if not chapter.results:
            continue
        out += [f"## {chapter.title}", "", f"Cells of {{doc}}`{chapter.docname}.ipynb </{chapter.docname}>`:", "",
                "```{list-table}", ":header-rows: 1", ":class: cscnb-ledger", ":widths: 30 15 35 20", "",
                "* - Result", "  - Derived symbolically", "  - Checked numerically, against", "  - Status"]
        for r in chapter.results:
            if r.kind in THEOREM_KINDS:
                # prf:ref shows the kind and number ("Theorem 5.3", "Lemma 5.1") and links the directive
                head = f"{{prf:ref}}`{r.label}`: {r.title or '(untitled)'} (`{r.label}`)"
            else:
                head = f"Measured claim: {r.title} (`{r.label}`)"
            derive = ", ".join(_cell_ref(chapter, n) for n in sorted(set(r.derive))) or "—"
            verb = "measured" if r.kind not in THEOREM_KINDS else "checked"
            check = "; ".join(f"{_cell_ref(chapter, n)}: {a}" for n, a in r.check) or f"— (not {verb})"
            out += [f"* - {head}", f"  - {derive}", f"  - {check}",
                    f"  - {status(chapter, r, run, built_commit, executed)}"]
        out += ["```", ""]
    return "\n".join(out)


def _toc_docnames(app):
    """Docnames in table-of-contents order (sphinx-external-toc's site map), else None."""
    site_map = getattr(app.config, "external_site_map", None)
    if site_map is None:
        return None
    from sphinx_external_toc.api import GlobItem

    order, seen = [], set()

    def visit(docname):
        if docname in seen or docname not in site_map:
            return
        seen.add(docname)
        order.append(docname)
        for tree in site_map[docname].subtrees:
            for item in tree.items:
                if isinstance(item, str) and not isinstance(item, GlobItem):
                    visit(str(item))
    visit(site_map.root.docname)
    return order


def chapter_paths(app):
    """[(docname, notebook path)] of the book's notebooks, in reading order."""
    srcdir = Path(app.srcdir)
    docnames = _toc_docnames(app)
    if docnames is None:
        docnames = sorted(p.relative_to(srcdir).with_suffix("").as_posix() for p in srcdir.rglob("*.ipynb")
                          if "_build" not in p.parts and ".ipynb_checkpoints" not in p.parts)
    return [(d, srcdir / f"{d}.ipynb") for d in docnames if (srcdir / f"{d}.ipynb").is_file()]


def _git(cwd, *args):
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def write_ledger(app):
    from sphinx.errors import ExtensionError

    try:
        chapters = [read_chapter(path, docname) for docname, path in chapter_paths(app)]
    except LedgerError as err:
        raise ExtensionError(f"claims ledger: {err}") from None
    measured = {}
    for chapter in chapters:
        for r in chapter.results:
            if r.kind == "measured claim" and measured.setdefault(r.label, chapter.docname) != chapter.docname:
                raise ExtensionError(f"claims ledger: measured claim {r.label!r} is declared in two chapters, "
                                     f"{measured[r.label]} and {chapter.docname}")
    build = Path(os.environ.get("CSCNB_NBVAL_DIR", Path(app.outdir).parent))
    run = load_nbval_run(build / "nbval-junit.xml", build / "nbval-run.json")
    commit = _git(app.srcdir, "rev-parse", "HEAD") or None
    dirty = bool(commit and _git(app.srcdir, "status", "--porcelain", "--untracked-files=no"))
    text = build_ledger_markdown(chapters, run, commit, executed=os.environ.get("CSCNB_LEDGER_EXECUTED") == "1",
                                 built_dirty=dirty)
    target = Path(app.srcdir) / f"{LEDGER_DOCNAME}.md"
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")


def anchor_code_cells(app, doctree):
    """Give each rendered code cell of a notebook page the id ``cell-N`` and the label ``cell_label``."""
    from docutils import nodes

    docname = app.env.docname
    path = Path(app.env.doc2path(docname))
    if path.suffix != ".ipynb":
        return
    nb = json.loads(path.read_text(encoding="utf-8"))
    number_of = {i: n for n, i in enumerate((i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"), 1)}
    std = app.env.get_domain("std")
    for node in doctree.findall(nodes.container):
        number = number_of.get(node.get("cell_index")) if node.get("nb_element") == "cell_code" else None
        anchor = f"cell-{number}"
        if number is None or anchor in doctree.ids:
            continue
        node["ids"].append(anchor)
        doctree.ids[anchor] = node
        std.anonlabels[cell_label(docname, number)] = (docname, anchor)
        std.labels[cell_label(docname, number)] = (docname, anchor, f"cell {number}")


def setup(app):
    app.connect("builder-inited", write_ledger)
    app.connect("doctree-read", anchor_code_cells)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
