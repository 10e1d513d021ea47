"""Sphinx extension for the API reference pages (``api/``): generated listings and label links.

Loaded from _config.yml (``sphinx: local_extensions``), next to ``sphinx.ext.autodoc``,
``sphinx.ext.autosummary`` and ``sphinx.ext.napoleon``. Five pieces:

* ``.. cscnb-exports::`` (in ``api/index.md``) — a table of every name of ``cscnb.__all__``, each linked
  to where it is documented: the subpackage whose module defines it (``cscnb._EXPORTS``), so the table
  can never drift from the package.
* ``.. cscnb-data:: cscnb.PACKAGE`` — the constants of the subpackage's ``__all__`` that ``automodule``
  leaves out (see :class:`DataDirective`).
* ``.. cscnb-submodules:: cscnb.PACKAGE`` — for every public module of a subpackage (found with
  ``pkgutil``; names starting with ``_`` skipped, and modules already documented on the page), a rubric
  and the module's docstring (``automodule`` without members: the members are documented once, under
  the subpackage's ``__all__``).
* Label links. Docstrings name the book's equations and theorems by their labels in double backticks
  (````eq-ista````, ````thm-ch9-stripe````). On the ``api/`` pages, a post-transform that runs before the
  cross-reference resolver turns an inline literal whose whole text is an existing equation label
  (the math domain's ``equations``) into an equation reference (shown as its number, "(5.3)"), and one
  that is an existing sphinx-proof label (``env.proof_list``) into a ``prf:ref`` ("Theorem 9.2").
  A literal that is not an existing label is left as it is, so no warning can come from it.
* Re-exported names. The API is documented where each subpackage exports it (``cscnb.core.ConvDictionary``);
  docstrings often name it by its defining module (``cscnb.core.dictionary.ConvDictionary``) or, inside
  a module, by its bare name. A ``missing-reference`` handler imports the missing Python target (tried
  as written, then inside the referring module and its class) and, when it is the very object documented
  under another name, links there. A target that is importable but not part of the documented API
  (a private helper) is shown as code without a link; anything else still warns (nitpicky).
"""
from __future__ import annotations

import importlib
import pkgutil
import re

from docutils import nodes
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

API_PREFIX = "api/"
LABEL = re.compile(r"^[a-z]+-[A-Za-z0-9_-]+$")


def _parse(directive, lines):
    node = nodes.container()
    nested_parse_with_titles(directive.state, StringList(lines, source="<cscnb_api>"), node)
    return node.children


class ExportsDirective(SphinxDirective):
    """A table of ``cscnb.__all__`` by subpackage, each name linked to where it is documented."""

    def run(self):
        import cscnb
        groups = {}
        for name in cscnb.__all__:
            module = cscnb._EXPORTS.get(name) or cscnb._MODULES[name]
            package = "cscnb." + module.split(".")[1]
            target = f"{package}.{name}" if name in cscnb._EXPORTS else "cscnb" + module
            groups.setdefault(package, []).append(f":py:obj:`{name} <{target}>`")
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 1 4", "",
                 "   * - Documented in", "     - Names"]
        for package, links in groups.items():
            lines += [f"   * - :py:mod:`{package}`", "     - " + ", ".join(links)]
        return _parse(self, lines)


class DataDirective(SphinxDirective):
    """The constants of a subpackage's ``__all__``, which ``automodule`` skips when they are re-exported.

    autodoc documents module data only when the module's own source defines it with a ``#:`` comment; a
    constant imported into the package ``__init__`` is silently left out. Each one is documented here under
    its public name, with the ``#:`` comment (or docstring) of the module that defines it and, when short,
    its value.
    """

    required_arguments = 1

    def run(self):
        from sphinx.pycode import ModuleAnalyzer
        package = importlib.import_module(self.arguments[0])
        documented = self.env.get_domain("py").objects
        modules = [importlib.import_module(f"{package.__name__}.{m.name}")
                   for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")]
        lines = []
        for name in package.__all__:
            full, obj = f"{package.__name__}.{name}", getattr(package, name)
            if full in documented or callable(obj) or isinstance(obj, type(package)):
                continue
            doc = []
            for module in modules:
                if getattr(module, name, None) is obj:
                    doc = ModuleAnalyzer.for_module(module.__name__).find_attr_docs().get(("", name), [])
                    if doc:
                        break
            lines += [f".. py:data:: {name}", f"   :module: {package.__name__}"]
            value = repr(obj)
            if len(value) <= 100 and "\n" not in value:
                lines.append(f"   :value: {value}")
            lines.append("")
            lines += ["   " + line for line in doc] + [""]
        return _parse(self, lines)


class SubmodulesDirective(SphinxDirective):
    """Rubric + docstring of every public module of a subpackage."""

    required_arguments = 1

    def run(self):
        package = importlib.import_module(self.arguments[0])
        documented = self.env.get_domain("py").modules
        lines = []
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            name = f"{package.__name__}.{info.name}"
            if info.name.startswith("_") or name in documented:
                continue
            lines += [f".. rubric:: ``{name}``", "", f".. automodule:: {name}"]
            if hasattr(package, info.name) and not isinstance(getattr(package, info.name), type(package)):
                lines.append("   :no-index:")         # the package exports a name that hides the module (train.fit)
            lines.append("")
        return _parse(self, lines)


class LabelLinks(SphinxPostTransform):
    """Inline literals that are equation / theorem labels of the book become references (api pages only)."""

    default_priority = 5                        # before ReferencesResolver (10) resolves them

    def run(self):
        if not self.env.docname.startswith(API_PREFIX):
            return
        equations = self.env.get_domain("math").equations
        proofs = getattr(self.env, "proof_list", {}) or {}
        for literal in list(self.document.findall(nodes.literal)):
            text = literal.astext()
            if not LABEL.match(text) or isinstance(literal.parent, (nodes.reference, addnodes.pending_xref)):
                continue
            if text in equations:
                xref = addnodes.pending_xref("", nodes.inline(text, text), refdomain="math", reftype="eq",
                                             reftarget=text, refdoc=self.env.docname, refexplicit=False)
            elif text in proofs:
                xref = addnodes.pending_xref("", nodes.inline(text, text), refdomain="prf", reftype="ref",
                                             reftarget=text, refdoc=self.env.docname, refexplicit=False)
            else:
                continue
            literal.replace_self(xref)


def _import(path):
    """The object at dotted ``path`` (module, then attributes), or None."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _documented_objects(app, env):
    """{id(object): documented full name} of every documented Python object, built once per write."""
    cache = getattr(env, "_cscnb_api_documented", None)
    if cache is None:
        cache = {}
        for name, entry in env.get_domain("py").objects.items():
            if entry.aliased:
                continue
            obj = _import(name)
            if obj is not None and not isinstance(obj, (int, float, str, bool, tuple, type(None))):
                cache.setdefault(id(obj), (name, entry.objtype))
        env._cscnb_api_documented = cache
    return cache


DOCSTRING_OF = re.compile(r"docstring of (cscnb(?:\.\w+)*)")


def _referring_object(node):
    """Dotted name of the object whose docstring holds ``node`` (from its source, "...docstring of NAME")."""
    while node is not None:
        match = DOCSTRING_OF.search(node.get("source") or getattr(node, "source", None) or "")
        if match:
            return match.group(1)
        node = node.parent
    return None


def resolve_reexport(app, env, node, contnode):
    refdoc = node.get("refdoc") or env.docname
    if node.get("refdomain") != "py" or not str(refdoc).startswith(API_PREFIX):
        return None
    target = node["reftarget"].lstrip(".~")
    candidates = [target]
    # the target as the referring code sees it: inside the object whose docstring it is, then each
    # enclosing scope (class, module, package), then in the documentation's current module and class
    scopes = []
    referrer = _referring_object(node)
    if referrer:
        parts = referrer.split(".")
        scopes += [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
    modname, classname = node.get("py:module"), node.get("py:class")
    if modname and classname:
        scopes.append(f"{modname}.{classname}")
    if modname:
        scopes.append(modname)
    candidates = [f"{scope}.{target}" for scope in scopes] + candidates
    documented = _documented_objects(app, env)
    for candidate in dict.fromkeys(candidates):
        if not candidate.startswith("cscnb"):
            continue
        obj = _import(candidate)
        if obj is None:
            continue
        found = documented.get(id(obj))
        if found is not None:
            name, objtype = found
            return env.get_domain("py").resolve_xref(env, refdoc, app.builder, objtype_role(objtype),
                                                     name, node, contnode)
        return contnode                         # importable, but not part of the documented API: plain code
    return None


def drop_foreign_docstrings(app, what, name, obj, options, lines):
    """An undocumented override (``forward`` of an ``nn.Module``) inherits its docstring from the base class;
    keep it when that base is a cscnb class, drop it when it is torch's (or any other package's)."""
    if what not in ("method", "attribute", "property") or not lines or getattr(obj, "__doc__", None):
        return
    owner_name, _, member = name.rpartition(".")
    owner = _import(owner_name)
    for base in getattr(owner, "__mro__", ())[1:]:
        attr = base.__dict__.get(member)
        if attr is not None and getattr(attr, "__doc__", None):
            if not base.__module__.startswith("cscnb"):
                lines[:] = []
            return


def objtype_role(objtype):
    return {"function": "func", "class": "class", "module": "mod", "data": "data", "method": "meth",
            "attribute": "attr", "property": "attr", "exception": "exc"}.get(objtype, "obj")


def clear_cache(app, env):
    env._cscnb_api_documented = None
    return []


def setup(app):
    app.add_directive("cscnb-exports", ExportsDirective)
    app.add_directive("cscnb-submodules", SubmodulesDirective)
    app.add_directive("cscnb-data", DataDirective)
    app.add_post_transform(LabelLinks)
    app.connect("missing-reference", resolve_reexport)
    app.connect("autodoc-process-docstring", drop_foreign_docstrings)
    app.connect("env-updated", clear_cache)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
