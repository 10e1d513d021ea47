"""Sphinx extension with the site fixes the browser test (tests/test_site.py) asked for.

Loaded from _config.yml (``sphinx: local_extensions``). Two fixes, both for reading the book
offline from ``_build/html`` with no console errors:

* Some extensions bundled by Jupyter Book (sphinx-thebe, sphinx-togglebutton) register their
  inline ``<script>`` bodies twice; a repeated ``const THEBE_JS_URL = ...`` is a SyntaxError
  ("Identifier 'THEBE_JS_URL' has already been declared") on every page. Each page keeps only
  the first copy of every identical script entry.
* ``_static/cscnb-offline.js`` turns off the search-result summaries when the site is opened
  from disk: Sphinx fetches every hit page to quote it, and browsers refuse ``fetch`` on
  ``file://`` (CORS), which logged an error per hit. Over HTTP the summaries stay on.
"""


def drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    # Two entries are duplicates when they render to the same <script> tag.
    render = context.get("js_tag") or str
    seen, unique = set(), []
    for script in scripts:
        key = render(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.add_js_file("cscnb-offline.js", priority=210)   # right after documentation_options.js
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
