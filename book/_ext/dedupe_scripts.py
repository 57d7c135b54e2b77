"""Drop duplicate <script> entries from every page.

sphinx-thebe (loaded by Jupyter Book 1 even with thebe off) registers its inline configuration
script twice in this setup, so each page declared ``const THEBE_JS_URL`` twice and the browser
logged a SyntaxError. This keeps the first copy of each identical script.
"""


def _dedupe(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        attrs = getattr(js, "attributes", {}) or {}
        name = getattr(js, "filename", js) or ""   # inline scripts carry None or ''
        key = (str(name), tuple(sorted((k, str(v)) for k, v in attrs.items())))
        if key in seen:
            continue
        seen.add(key)
        kept.append(js)
    scripts[:] = kept


def setup(app):
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
