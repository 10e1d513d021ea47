"""Browser test of the rendered book, read offline the way a reader does (issue 6).

Every page of the built site (``_build/html``, or ``$CSCNB_SITE_DIR``) is opened from disk
(``file://``) in Debian's Chromium, driven by Playwright for Python. Every request that is not a
``file:`` (or ``data:``/``blob:``) URL is aborted and recorded, and the test fails on it. Checked:

* no console errors, no page errors, no failed requests, no network attempts, on every page;
* MathJax — the offline copy in ``_static/mathjax`` — finishes typesetting and leaves at least one
  rendered equation and no TeX error on every chapter and on the notation page, and the book's
  macros (``\\argmin``, ``\\prox``, ``\\shrink``, ``\\relu``, ``\\sign``, ``\\R``) expand;
* every internal link resolves: the file exists and its ``#anchor`` is an id on the target page;
  theorem references land on theorems, equation references on numbered equations;
* reader features: the "What this chapter proves" box links theorems, code cells have copy
  buttons, ``hide-input`` cells start collapsed and open on click, chapters offer their ``.ipynb``
  for download, every page links the notation page, the search page finds chapter 1 for
  "soft threshold", the theme switch turns a page dark and figures keep an opaque white backing.
* figures: every output image of a chapter sits in a numbered, captioned figure ("Fig. 3.1", numbered
  1, 2, ... within the chapter), every figure is referenced from the text, and every ``fig-`` reference
  lands on a figure and shows that figure's number.

Screenshots of every chapter page, light and dark (and of the notation page), are written to
``_build/screenshots/``.
"""
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parent.parent
SITE = Path(os.environ.get("CSCNB_SITE_DIR", ROOT / "_build" / "html")).resolve()
SCREENSHOTS = Path(os.environ.get("CSCNB_SCREENSHOT_DIR", ROOT / "_build" / "screenshots")).resolve()
CHROMIUM = os.environ.get("CSCNB_CHROMIUM", "/usr/bin/chromium")
# Headless, no GPU, and none of Chromium's own background traffic (updates, sync, QUIC probes);
# the resolver rule makes any request that slipped past the route guard fail instead of leaving.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND"]
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
BOOK_MACROS = ("argmin", "prox", "shrink", "relu", "sign", "R")
SEARCH_QUERY, SEARCH_HIT = "soft threshold", "chapters/01_soft_threshold.html"
TIMEOUT_MS = 60_000

# Collected in the page, once per visit (one round trip instead of dozens).
PAGE_FACTS_JS = """() => {
  const q = (s) => Array.from(document.querySelectorAll(s));
  const box = q('.admonition').find(a => (a.querySelector('.admonition-title') || {}).textContent
                                          === 'What this chapter proves');
  return {
    ids: q('[id]').map(e => e.id).concat(q('a[name]').map(e => e.name)),
    theoremIds: q('div.proof[id]').map(e => e.id),
    equationIds: q('div.math[id], span.math[id]').map(e => e.id),
    links: q('a[href]').map(a => ({href: a.href, text: a.textContent.trim().slice(0, 80), cls: a.className})),
    mathRendered: q('mjx-container').length,
    mathErrors: q('mjx-merror, [data-mjx-error]').map(e => e.textContent.slice(0, 80)),
    provesBoxLinks: box ? Array.from(box.querySelectorAll('a.reference.internal'), a => a.href) : null,
    copyButtons: q('button.copybtn').length,
    codeCells: q('div.cell_input').length,
    hiddenInputs: q('.cell.tag_hide-input details').map(d => d.open),
    downloads: q('a[href$=".ipynb"], a[href$=".md"]').map(a => a.href),
    notationLinks: q('.cscnb-notation-link a').map(a => a.href),
    hasMathJax: !!document.querySelector('script[src*="mathjax"]'),
    figures: q('figure').map(f => ({id: f.id, hasImage: !!f.querySelector('img'),
      number: ((f.querySelector('figcaption .caption-number') || {}).textContent || '').trim(),
      caption: ((f.querySelector('figcaption .caption-text') || {}).textContent || '').trim()})),
    outputImagesOutsideFigures: q('.cell_output img').filter(i => !i.closest('figure')).length,
  };
}"""

MATHJAX_READY_JS = """async () => {
  await MathJax.startup.promise;
  const macros = (MathJax.config.tex || {}).macros || {};
  const expanded = {};
  for (const name of %s) {
    const mml = MathJax.tex2mml('\\\\' + name + '{x}');
    expanded[name] = name in macros && !/merror|mathcolor="red"/.test(mml);
  }
  return {version: MathJax.version, expanded};
}""" % list(BOOK_MACROS)


@dataclass
class PageReport:
    path: str
    console_errors: list = field(default_factory=list)
    failed_requests: list = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    mathjax: dict = field(default_factory=dict)
    hide_input_opens: bool | None = None
    dark: dict = field(default_factory=dict)


def _site_pages():
    skip = {"_static", "_sources", "_images"}
    return sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html")
                  if not skip.intersection(p.relative_to(SITE).parts))


def _is_chapter(path):
    return path.startswith("chapters/")


def _redirect_target(path):
    match = re.search(r'http-equiv="Refresh" content="0; url=([^"]+)"', (SITE / path).read_text("utf-8"))
    return match and match.group(1)


def _visit(page, report):
    page.goto((SITE / report.path).as_uri(), wait_until="load")
    if page.evaluate("() => !!document.querySelector('script[src*=\"mathjax\"]')"):
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
        report.mathjax = page.evaluate(MATHJAX_READY_JS)
    report.facts = page.evaluate(PAGE_FACTS_JS)
    if report.path == "notation.html":
        page.screenshot(path=str(SCREENSHOTS / "notation-light.png"), full_page=True)
    if not _is_chapter(report.path):
        return
    stem = Path(report.path).stem
    page.screenshot(path=str(SCREENSHOTS / f"{stem}-light.png"), full_page=True)
    if report.facts["hiddenInputs"]:
        page.locator(".cell.tag_hide-input details > summary").first.click()
        report.hide_input_opens = page.evaluate(
            "() => { const d = document.querySelector('.cell.tag_hide-input details');"
            " const i = d.querySelector('.cell_input'); return d.open && !!i && i.offsetHeight > 0; }")
        page.locator(".cell.tag_hide-input details > summary").first.click()   # collapse again
    report.dark["before"] = page.evaluate("() => document.documentElement.dataset.theme")
    for _ in range(3):   # the switch cycles auto -> light -> dark (order depends on the system mode)
        if page.evaluate("() => document.documentElement.dataset.theme") == "dark":
            break
        page.locator("button.theme-switch-button:visible").first.click()
    report.dark["after"] = page.evaluate("() => document.documentElement.dataset.theme")
    report.dark["figure_backgrounds"] = page.evaluate(
        "() => Array.from(document.querySelectorAll('.cell_output img'), i => getComputedStyle(i).backgroundColor)")
    # The clicks above scrolled and left focus on a button (which shows the skip link): reset both
    # so the full-page screenshot looks like a fresh visit.
    page.evaluate("() => { if (document.activeElement) document.activeElement.blur(); window.scrollTo(0, 0); }")
    page.screenshot(path=str(SCREENSHOTS / f"{stem}-dark.png"), full_page=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Visit every page once; return {path: PageReport}, the blocked URLs and the search hits."""
    if not (SITE / "intro.html").is_file():
        pytest.fail(f"no built site at {SITE}: run `make html-strict` (or `make html`) first")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"Chromium not found at {CHROMIUM}: `make site-browser` installs Debian's chromium "
                    "with apt-get (needs root); set CSCNB_CHROMIUM to use another binary")
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    reports, blocked, current = {}, [], [None]

    def guard(route):
        url = route.request.url
        if url.startswith(LOCAL_SCHEMES):
            route.continue_()
        else:
            blocked.append(url)
            route.abort("blockedbyclient")

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900}, color_scheme="light")
        context.set_default_timeout(TIMEOUT_MS)
        context.route("**/*", guard)
        # Start every page in the light theme whatever the previous page switched to.
        context.add_init_script("try { localStorage.setItem('mode', 'light') } catch (e) {}")
        page = context.pages[0] if context.pages else context.new_page()
        page.on("console", lambda m: m.type == "error" and current[0].console_errors.append(m.text))
        page.on("pageerror", lambda e: current[0].console_errors.append(f"uncaught: {e}"))
        page.on("requestfailed", lambda r: r.url not in blocked and current[0].failed_requests.append(
            f"{r.url} ({r.failure})"))
        for path in _site_pages():
            current[0] = reports[path] = PageReport(path)
            if not _redirect_target(path):
                _visit(page, reports[path])
        current[0] = search = PageReport("search.html?q=" + SEARCH_QUERY)
        page.goto((SITE / "search.html").as_uri() + "?q=" + SEARCH_QUERY.replace(" ", "+"))
        # Sphinx retitles the results "Search Results" once the last hit is listed.
        page.wait_for_function("() => { const h = document.querySelector('#search-results h2');"
                               " return !!h && h.textContent.trim() === 'Search Results'; }")
        hits = page.evaluate("() => Array.from(document.querySelectorAll('#search-results ul.search li a'),"
                             " a => a.href)")
        reports[search.path] = search
        context.close()
    return {"pages": reports, "blocked": blocked, "search_hits": hits}


def _problems(site, check):
    found = [f"{path}: {msg}" for path, r in site["pages"].items() for msg in check(path, r)]
    return "\n".join(found[:30]) + (f"\n... and {len(found) - 30} more" if len(found) > 30 else "")


def _local_target(url):
    """(path relative to SITE, fragment) for a link into the site; None for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None
    target = Path(unquote(parts.path))
    try:
        return target.relative_to(SITE).as_posix(), unquote(parts.fragment)
    except ValueError:
        return "<outside the site>/" + target.as_posix(), parts.fragment


def test_every_page_was_visited(site):
    chapters = [p for p in site["pages"] if _is_chapter(p)]
    assert len(chapters) >= 5 and "notation.html" in site["pages"] and "bibliography.html" in site["pages"]


def test_no_network_requests(site):
    assert not site["blocked"], "requests that would leave the machine:\n" + "\n".join(sorted(set(site["blocked"])))


def test_no_console_errors_or_failed_requests(site):
    problems = _problems(site, lambda p, r: [f"console: {m}" for m in r.console_errors]
                         + [f"request failed: {m}" for m in r.failed_requests])
    assert not problems, problems


def test_mathjax_renders_offline_with_the_book_macros(site):
    def check(path, r):
        if not (_is_chapter(path) or path == "notation.html"):
            return []
        out = [] if r.facts.get("hasMathJax") else ["page loads no MathJax"]
        if r.facts.get("mathRendered", 0) < 1:
            out.append("no rendered MathJax element")
        out += [f"TeX error: {e}" for e in r.facts.get("mathErrors", [])]
        if not str(r.mathjax.get("version", "")).startswith("3."):
            out.append(f"MathJax version {r.mathjax.get('version')!r}: the macros in _config.yml are MathJax 3 config")
        out += [f"macro \\{m} does not expand" for m, ok in r.mathjax.get("expanded", {}).items() if not ok]
        return out
    problems = _problems(site, check)
    assert not problems, problems


def _anchor_index(site):
    return {path: r.facts for path, r in site["pages"].items() if r.facts}


def test_every_internal_link_resolves(site):
    index = _anchor_index(site)

    def check(path, r):
        out = []
        for link in r.facts.get("links", []):
            target = _local_target(link["href"])
            if target is None:
                continue    # external links (repository, Binder, Colab, DOIs) are not followed offline
            file, fragment = target
            if not (SITE / file).exists():
                out.append(f"{link['text']!r} -> missing file {file}")
            elif fragment and file in index and fragment not in index[file]["ids"]:
                out.append(f"{link['text']!r} -> no anchor #{fragment} in {file}")
            elif fragment and file.endswith(".html") and file not in index and not _redirect_target(file):
                out.append(f"{link['text']!r} -> #{fragment} in a page the test did not visit: {file}")
        return out
    problems = _problems(site, check)
    assert not problems, problems


def test_theorem_and_equation_references_land_on_theorems_and_equations(site):
    index = _anchor_index(site)
    seen = {"theorem": 0, "equation": 0}

    def check(path, r):
        out = []
        for link in r.facts.get("links", []):
            target = _local_target(link["href"])
            if not target or target[0] not in index:
                continue
            file, fragment = target
            if fragment.startswith("thm-"):
                seen["theorem"] += 1
                if fragment not in index[file]["theoremIds"]:
                    out.append(f"{link['text']!r} -> #{fragment} is not a theorem in {file}")
            elif fragment.startswith("equation-") and "headerlink" not in link["cls"]:
                seen["equation"] += 1
                if fragment not in index[file]["equationIds"]:
                    out.append(f"{link['text']!r} -> #{fragment} is not an equation in {file}")
                elif link["text"] and not re.fullmatch(r"\(\d+(\.\d+)*\)", link["text"]):
                    out.append(f"equation reference shows {link['text']!r}, not a number like (1.2)")
        return out
    problems = _problems(site, check)
    assert not problems, problems
    assert seen["theorem"] >= 10 and seen["equation"] >= 10, f"too few references checked: {seen}"


def test_each_chapter_opens_with_a_proves_box_linking_its_theorems(site):
    def check(path, r):
        links = r.facts.get("provesBoxLinks")
        if not _is_chapter(path):
            return []
        if links is None:
            return ["no 'What this chapter proves' admonition"]
        theorems = [u for u in links if "#thm-" in u]
        return [] if theorems else ["the 'What this chapter proves' box links no theorem"]
    problems = _problems(site, check)
    assert not problems, problems


def test_reader_features_on_chapter_pages(site):
    def check(path, r):
        if not _is_chapter(path):
            return []
        f, out = r.facts, []
        if f["codeCells"] and f["copyButtons"] < f["codeCells"]:
            out.append(f"{f['copyButtons']} copy buttons for {f['codeCells']} code cells")
        if not f["hiddenInputs"]:
            out.append("no hide-input cell (long plotting/helper cells should be collapsed)")
        elif any(f["hiddenInputs"]) or r.hide_input_opens is not True:
            out.append(f"hide-input cells open={f['hiddenInputs']}, toggle opens: {r.hide_input_opens}")
        if not any(u.endswith(Path(path).stem + ".ipynb") for u in f["downloads"]):
            out.append("no .ipynb download link")
        return out
    problems = _problems(site, check)
    assert not problems, problems


def test_every_page_links_the_notation_page(site):
    notation = (SITE / "notation.html").as_uri()
    problems = _problems(site, lambda p, r: [] if not r.facts or notation in [
                             u.split("#")[0] for u in r.facts["notationLinks"]]
                         else [f"no sidebar link to notation.html (found {r.facts['notationLinks']})"])
    assert not problems, problems


def test_search_finds_chapter_one(site):
    hits = [_local_target(u)[0] for u in site["search_hits"]]
    assert SEARCH_HIT in hits, f"search for {SEARCH_QUERY!r} returned {hits}"


def test_dark_mode_toggles_and_figures_keep_a_white_backing(site):
    def check(path, r):
        if not _is_chapter(path):
            return []
        out = [] if (r.dark.get("before"), r.dark.get("after")) == ("light", "dark") else [
            f"theme switch: data-theme {r.dark.get('before')!r} -> {r.dark.get('after')!r}"]
        backs = r.dark.get("figure_backgrounds", [])
        if not backs:
            out.append("no figure found")
        out += [f"figure background {b} in dark mode" for b in backs if b != "rgb(255, 255, 255)"]
        return out
    problems = _problems(site, check)
    assert not problems, problems
    shots = sorted(SCREENSHOTS.glob("*.png"))
    assert len(shots) >= 2 * sum(map(_is_chapter, site["pages"])), f"screenshots: {shots}"


FIGURE_NUMBER = re.compile(r"Fig\. (\d+)\.(\d+)")


def test_chapter_figures_are_numbered_and_captioned(site):
    """MyST-NB wraps an output in a figure only when the cell has ``mystnb.figure`` metadata (a
    caption and a ``fig-...`` name); an image without it has no number and cannot be referenced."""
    seen = [0]

    def check(path, r):
        if not _is_chapter(path) or not r.facts:
            return []
        f = r.facts
        out = [f"{f['outputImagesOutsideFigures']} output image(s) not in a numbered figure"] if f[
            "outputImagesOutsideFigures"] else []
        numbers = []
        for fig in (g for g in f["figures"] if g["hasImage"]):
            seen[0] += 1
            match = FIGURE_NUMBER.fullmatch(fig["number"])
            if not fig["id"].startswith("fig-"):
                out.append(f"figure {fig['number']!r} has id {fig['id']!r}, not a fig-... name")
            if not match:
                out.append(f"figure #{fig['id']} shows caption number {fig['number']!r}, not 'Fig. N.M'")
            else:
                numbers.append((int(match.group(1)), int(match.group(2))))
            if len(fig["caption"]) < 20:
                out.append(f"figure #{fig['id']} has no real caption: {fig['caption']!r}")
        if numbers and ({n for n, _ in numbers} != {numbers[0][0]}
                        or [m for _, m in numbers] != list(range(1, len(numbers) + 1))):
            out.append(f"figure numbers are not one chapter's 1, 2, ...: {numbers}")
        if not numbers:
            out.append("no numbered figure")
        return out
    problems = _problems(site, check)
    assert not problems, problems
    assert seen[0] >= 10, f"only {seen[0]} figures found"


def test_figure_references_resolve_to_numbered_figures(site):
    index = _anchor_index(site)
    figures = {(path, fig["id"]): fig["number"] for path, facts in index.items()
               for fig in facts.get("figures", []) if fig["id"]}
    referenced, checked = set(), [0]

    def check(path, r):
        out = []
        for link in r.facts.get("links", []):
            target = _local_target(link["href"])
            if not target or not target[1].startswith("fig-") or "headerlink" in link["cls"]:
                continue
            checked[0] += 1
            if target not in figures:
                out.append(f"{link['text']!r} -> #{target[1]} is not a figure in {target[0]}")
            elif link["text"] != figures[target]:
                out.append(f"reference to #{target[1]} shows {link['text']!r}, not {figures[target]!r}")
            else:
                referenced.add(target)
        return out
    problems = _problems(site, check)
    assert not problems, problems
    unreferenced = sorted(f"{p}#{i}" for (p, i) in figures if _is_chapter(p) and (p, i) not in referenced)
    assert not unreferenced, "figures never referenced with {numref} from the text:\n" + "\n".join(unreferenced)
    assert checked[0] >= 10, f"only {checked[0]} figure references found"
