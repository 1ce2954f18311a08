"""Sphinx extension of this book's site (loaded through ``_config.yml``, ``local_extensions``).

* ``chapter-overview`` directive: the landing page's table of chapters, one line per
  chapter in the directive's body::

      ```{chapter-overview}
      01_getting_started | 25 | what the chapter teaches, in one sentence
      ```

  fields: the notebook's name under ``chapters/``, its runtime in seconds in the quick
  profile (as measured in CI), what it teaches. The title links to the chapter; the Colab
  link is built from ``repository.url`` and ``repository.branch`` in ``_config.yml``, the
  same setting the badges and setup cells follow (``python tools/notebooks.py sync``).
* MyST substitutions ``{{ repository }}``, ``{{ release }}`` and ``{{ pip_install }}`` (the
  install command of the setup cells), from the same setting.
* Each script and stylesheet is put on a page once: sphinx-thebe registers its inline
  configuration script twice, and the second copy (``const THEBE_JS_URL`` declared again)
  raised a SyntaxError on every page.
"""

from __future__ import annotations

from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.util.docutils import SphinxDirective

__all__ = ["ChapterOverview", "colab_url", "setup"]


def colab_url(repository_url: str, ref: str, notebook: str) -> str:
    """The Colab address of ``chapters/<notebook>.ipynb`` at ``ref`` of a GitHub repository."""
    prefix = "https://github.com/"
    if not repository_url.startswith(prefix):
        raise ValueError(
            f"repository.url must be a GitHub address ({prefix}<owner>/<name>), got {repository_url!r}: "
            "Colab opens notebooks from GitHub only"
        )
    slug = repository_url[len(prefix):].strip("/").removesuffix(".git")
    return f"https://colab.research.google.com/github/{slug}/blob/{ref}/chapters/{notebook}.ipynb"


def _runtime(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


class ChapterOverview(SphinxDirective):
    has_content = True

    def run(self):
        options = self.config.html_theme_options
        repo, ref = options.get("repository_url", ""), options.get("repository_branch", "")
        table = nodes.table(classes=["chapter-overview"])
        group = nodes.tgroup(cols=4)
        table += group
        for width in (30, 46, 12, 12):
            group += nodes.colspec(colwidth=width)

        def row(cells, header=False):
            tr = nodes.row()
            for cell in cells:
                entry = nodes.entry()
                entry += cell if isinstance(cell, nodes.Element) else nodes.paragraph(text=cell)
                tr += entry
            return tr

        head = nodes.thead()
        head += row(["Chapter", "What it teaches", "Quick profile", "Colab"])
        group += head
        body = nodes.tbody()
        group += body
        root = Path(self.env.srcdir)
        for lineno, line in enumerate(self.content, start=self.content_offset + 1):
            if not line.strip():
                continue
            parts = [p.strip() for p in line.split("|")]
            if len(parts) != 3:
                raise self.error(
                    f"chapter-overview line {lineno}: expected 'notebook | seconds | what it teaches', got {line!r}"
                )
            name, seconds, teaches = parts
            if not (root / "chapters" / f"{name}.ipynb").is_file():
                raise self.error(f"chapter-overview: chapters/{name}.ipynb does not exist (line {line!r})")
            try:
                seconds = float(seconds)
            except ValueError:
                raise self.error(f"chapter-overview: runtime {seconds!r} of {name} is not a number of seconds")
            title = nodes.paragraph()
            xref = addnodes.pending_xref(
                "", refdomain="std", reftype="doc", reftarget=f"/chapters/{name}", refexplicit=False,
                refdoc=self.env.docname,
            )
            xref += nodes.inline(text=name)
            title += xref
            colab = nodes.paragraph()
            colab += nodes.reference("", "Open in Colab", refuri=colab_url(repo, ref, name))
            body += row([title, teaches, _runtime(seconds), colab])
        return [table]


def _install_substitutions(app, config):
    options = config.html_theme_options
    repo, ref = options.get("repository_url", ""), options.get("repository_branch", "")
    subs = dict(getattr(config, "myst_substitutions", None) or {})
    subs.setdefault("repository", repo)
    subs.setdefault("release", ref)
    subs.setdefault("pip_install", f'`pip install "git+{repo}@{ref}"`')
    config.myst_substitutions = subs


def _dedupe_assets(app, pagename, templatename, context, doctree):
    for key in ("script_files", "css_files"):
        files = context.get(key)
        if not files:
            continue
        seen, unique = set(), []
        for asset in files:
            attributes = getattr(asset, "attributes", {})
            ident = (str(getattr(asset, "filename", asset) or ""), tuple(sorted((k, str(v)) for k, v in attributes.items())))
            if ident not in seen:
                seen.add(ident)
                unique.append(asset)
        files[:] = unique  # in place: the builder keeps adding to this list


def setup(app):
    app.add_directive("chapter-overview", ChapterOverview)
    app.connect("config-inited", _install_substitutions)
    app.connect("html-page-context", _dedupe_assets, priority=900)  # after the themes
    return {"parallel_read_safe": True, "parallel_write_safe": True}
