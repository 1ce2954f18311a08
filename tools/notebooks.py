"""Keep the chapter notebooks in the book's house form.

    python tools/notebooks.py tags  [NOTEBOOK ...]   # nbval marker comments -> cell tags
    python tools/notebooks.py sync  [NOTEBOOK ...]   # Colab badge + install line from _config.yml
    python tools/notebooks.py sync --check            # exit 1 if a notebook is out of date

``tags``: nbval only honours a ``# NBVAL_CHECK_OUTPUT`` comment on a line of its own; at the
end of a code line it is silently ignored, and the cell is not checked at all. Cell tags
(``nbval-check-output``, ``nbval-ignore-output``, ``nbval-skip``, ``raises-exception``) always
work and do not show on the site. This command moves every marker into the cell's tags and
removes the comment (the whole line when the comment stands alone).

``sync``: the repository address and the release the notebooks install are ONE setting,
``repository.url`` and ``repository.branch`` in ``_config.yml``. This command rewrites, in
every chapter, the Colab badge's link (title cell) and the install block of the setup cell
from it, in one layout (``REPO = "git+<url>@<ref>"`` then ``pip install -q REPO``).

Without NOTEBOOK arguments both act on every ``chapters/*.ipynb``. Notebooks are rewritten
in nbformat's own layout (one-space indent, UTF-8, trailing newline); nothing else changes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"

__all__ = [
    "MARKER",
    "TAG_OF_MARKER",
    "chapter_notebooks",
    "colab_url",
    "convert_markers",
    "install_block",
    "install_spec",
    "read_notebook",
    "repository_setting",
    "setup_cell_index",
    "sync_notebook",
    "write_notebook",
]

MARKER = re.compile(r"[ \t]*#[ \t]*NBVAL_([A-Z_]+)\b[^\n]*")
TAG_OF_MARKER = {
    "CHECK_OUTPUT": "nbval-check-output",
    "IGNORE_OUTPUT": "nbval-ignore-output",
    "SKIP": "nbval-skip",
    "RAISES_EXCEPTION": "raises-exception",
}
COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^)\s\"']+")
GIT_SPEC = re.compile(r"git\+[a-z]+://[^\s\"']+")
SETUP_CALL = re.compile(r"^\s*cfg\s*=\s*setup\(", re.M)
# The Colab install block of a setup cell, in any of the layouts the chapters have used.
INSTALL_BLOCK = re.compile(
    r"(?:^[ \t]*# on Colab[^\n]*\n)?"
    r"^if \"google\.colab\" in sys\.modules:[^\n]*\n"
    r"(?:[ \t]+[^\n]*\n)*?[ \t]+[^\n]*check=True\)[^\n]*(?:\n|$)",
    re.M,
)


# ----------------------------------------------------------------------------- the setting
def repository_setting(root: Path = ROOT) -> tuple[str, str]:
    """``(url, ref)`` from ``_config.yml``: the repository address and the release to install."""
    config = yaml.safe_load((root / "_config.yml").read_text())
    repo = config.get("repository") or {}
    url, ref = str(repo.get("url", "")).rstrip("/"), str(repo.get("branch", ""))
    if not url.startswith("https://github.com/"):
        raise ValueError(f"_config.yml: repository.url must be https://github.com/<owner>/<name>, got {url!r}")
    if not ref or ref in ("main", "master"):
        raise ValueError(
            f"_config.yml: repository.branch must name a release tag or a commit, got {ref!r}: "
            "a moving branch makes every old notebook install whatever is newest"
        )
    return url, ref


def colab_url(url: str, ref: str, notebook: str) -> str:
    """The Colab address that opens ``chapters/<notebook>.ipynb`` at ``ref``."""
    slug = url.removeprefix("https://github.com/").strip("/").removesuffix(".git")
    return f"https://colab.research.google.com/github/{slug}/blob/{ref}/chapters/{notebook}.ipynb"


def install_spec(url: str, ref: str) -> str:
    """What the setup cell gives to ``pip install``."""
    return f"git+{url}@{ref}"


def install_block(url: str, ref: str) -> str:
    """The setup cell's Colab install block, in the one layout every chapter uses (lines <= 88)."""
    return (
        'if "google.colab" in sys.modules:  # on Colab: install the toolkit from the repository\n'
        f'    REPO = "{install_spec(url, ref)}"\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", REPO], check=True)\n'
    )


# ----------------------------------------------------------------------------- notebooks
def chapter_notebooks(root: Path = ROOT) -> list[Path]:
    return sorted((root / "chapters").glob("[0-9]*.ipynb"))


def read_notebook(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_notebook(path: Path, nb: dict) -> None:
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _set_source(cell: dict, text: str) -> None:
    cell["source"] = text.splitlines(keepends=True)


def setup_cell_index(nb: dict) -> int | None:
    """Index of the (first) code cell that calls ``cfg = setup(...)``."""
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code" and SETUP_CALL.search(_source(cell)):
            return i
    return None


def convert_markers(nb: dict) -> int:
    """Move nbval marker comments into cell tags; returns the number of markers moved."""
    moved = 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        lines = _source(cell).splitlines(keepends=True)
        kept = []
        for line in lines:
            found = MARKER.search(line)
            if not found:
                kept.append(line)
                continue
            name = found.group(1)
            if name not in TAG_OF_MARKER:
                raise ValueError(f"unknown nbval marker NBVAL_{name} in line {line!r}; known: {sorted(TAG_OF_MARKER)}")
            tags = cell.setdefault("metadata", {}).setdefault("tags", [])
            if TAG_OF_MARKER[name] not in tags:
                tags.append(TAG_OF_MARKER[name])
            moved += 1
            rest = line[: found.start()].rstrip()
            if rest.strip():  # code before the comment: keep the code
                kept.append(rest + ("\n" if line.endswith("\n") else ""))
        if kept and not lines[-1].endswith("\n") and kept[-1].endswith("\n"):
            kept[-1] = kept[-1][:-1]  # the cell's last line had no newline: keep it so
        _set_source(cell, "".join(kept))
    return moved


def sync_notebook(nb: dict, name: str, url: str, ref: str) -> list[str]:
    """Point the badge and the install line at the setting; returns what changed (empty: nothing)."""
    changes = []
    title = nb["cells"][0]
    if title["cell_type"] == "markdown":
        text = _source(title)
        new = COLAB_LINK.sub(colab_url(url, ref, name), text)
        if new != text:
            _set_source(title, new)
            changes.append("Colab badge")
    i = setup_cell_index(nb)
    if i is not None:
        text = _source(nb["cells"][i])
        new = INSTALL_BLOCK.sub(lambda m: install_block(url, ref), text, count=1)
        new = GIT_SPEC.sub(install_spec(url, ref), new)
        if new != text:
            _set_source(nb["cells"][i], new)
            changes.append("install line")
    return changes


# ----------------------------------------------------------------------------- CLI
def _paths(args) -> list[Path]:
    return [Path(p) for p in args.notebooks] or chapter_notebooks()


def cmd_tags(args) -> int:
    for path in _paths(args):
        nb = read_notebook(path)
        moved = convert_markers(nb)
        if moved:
            write_notebook(path, nb)
        print(f"{path}: {moved} marker(s) moved into cell tags")
    return 0


def cmd_sync(args) -> int:
    url, ref = repository_setting()
    stale = 0
    for path in _paths(args):
        nb = read_notebook(path)
        changes = sync_notebook(nb, Path(path).stem, url, ref)
        if changes and not args.check:
            write_notebook(path, nb)
        stale += bool(changes)
        verb = "out of date" if args.check else "updated"
        print(f"{path}: {verb}: {', '.join(changes)}" if changes else f"{path}: up to date")
    if args.check and stale:
        print(f"{stale} notebook(s) do not follow _config.yml; run: python tools/notebooks.py sync", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/notebooks.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("tags", help="move nbval marker comments into cell tags")
    p.add_argument("notebooks", nargs="*", help="default: chapters/*.ipynb")
    p.set_defaults(func=cmd_tags)
    p = sub.add_parser("sync", help="point Colab badges and install lines at _config.yml's repository setting")
    p.add_argument("notebooks", nargs="*", help="default: chapters/*.ipynb")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is out of date")
    p.set_defaults(func=cmd_sync)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
