// cscnb: a site opened from disk (file://) cannot fetch its own pages (browsers block fetch on
// file: URLs), so Sphinx's search must not try to quote each hit; over HTTP nothing changes.
// (DOCUMENTATION_OPTIONS is a top-level const of documentation_options.js, not a window property.)
if (window.location.protocol === "file:" && typeof DOCUMENTATION_OPTIONS !== "undefined") {
  DOCUMENTATION_OPTIONS.SHOW_SEARCH_SUMMARY = false;
}
