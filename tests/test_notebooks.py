"""The chapter notebooks, read as files (nothing is executed): the house form, and checks that can fail.

For every ``chapters/NN_*.ipynb``:

* no nbval marker comment (``# NBVAL_CHECK_OUTPUT`` ...): nbval ignores one at the end of a
  code line, so the cell silently goes unchecked; cell tags are the only form
  (``python tools/notebooks.py tags`` converts);
* a cell tagged ``nbval-check-output`` does not print ``False`` in its stored output (a
  check that printed ``False`` when the notebook was stored is a failed check);
* no stored output is an error;
* no code line is longer than 88 characters (they scroll sideways on a phone);
* every figure has a caption and alt text, in myst-nb's cell metadata
  ``{"mystnb": {"figure": {"caption": ..., "name": ...}, "image": {"alt": ...}}}``, and a
  cell holds at most one figure (the metadata captions one);
* the first cell is the title cell: a ``# `` title and the Colab badge, whose link follows
  ``repository.url``/``repository.branch`` in ``_config.yml``;
* there is exactly one setup cell (``cfg = setup(...)``), the first code cell, and its
  install line is ``pip install git+<repository.url>@<repository.branch>``
  (``python tools/notebooks.py sync`` rewrites both).

The tools themselves are tested on small synthetic notebooks at the end.
"""

from __future__ import annotations

import copy
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("book_notebook_tools", ROOT / "tools" / "notebooks.py")
nbtools = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nbtools)

NOTEBOOKS = nbtools.chapter_notebooks(ROOT)
MAX_LINE = 88
BADGE = "[![Open In Colab](../book/images/colab-badge.svg)]"
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml")


def _src(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _text(output) -> str:
    """What an output shows as text (stream text or text/plain)."""
    if output.get("output_type") == "stream":
        text = output.get("text", "")
    else:
        text = (output.get("data") or {}).get("text/plain", "")
    return "".join(text) if isinstance(text, list) else text


def _code_cells(nb):
    return [(i, c) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]


@pytest.fixture(scope="module", params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def notebook(request):
    return request.param, nbtools.read_notebook(request.param)


def test_there_are_chapters():
    assert NOTEBOOKS, "no chapters/NN_*.ipynb found"


def test_no_nbval_marker_comments(notebook):
    path, nb = notebook
    bad = [
        f"cell {i}: {line.strip()[:70]}"
        for i, c in _code_cells(nb)
        for line in _src(c).splitlines()
        if re.search(r"#\s*NBVAL_", line)
    ]
    assert not bad, (
        f"{path.name}: nbval marker comments (nbval ignores one at the end of a code line; use cell tags, "
        f"`python tools/notebooks.py tags {path.relative_to(ROOT)}`):\n  " + "\n  ".join(bad)
    )


def test_checked_cells_do_not_print_false(notebook):
    path, nb = notebook
    bad = []
    for i, c in _code_cells(nb):
        if "nbval-check-output" not in c.get("metadata", {}).get("tags", []):
            continue
        text = "".join(_text(o) for o in c.get("outputs", []))
        if re.search(r"\bFalse\b", text):
            bad.append(f"cell {i}: {text.strip()[:120]!r}")
    assert not bad, f"{path.name}: a checked cell printed False (a failed check stored in the notebook):\n  " + "\n  ".join(bad)


def test_no_error_outputs(notebook):
    path, nb = notebook
    bad = [
        f"cell {i}: {o.get('ename')}: {str(o.get('evalue'))[:100]}"
        for i, c in _code_cells(nb)
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not bad, f"{path.name}: stored error outputs (re-execute the notebook):\n  " + "\n  ".join(bad)


def test_code_lines_fit(notebook):
    path, nb = notebook
    bad = [
        f"cell {i} line {n}: {len(line)} chars: {line[:60]}..."
        for i, c in _code_cells(nb)
        for n, line in enumerate(_src(c).splitlines(), start=1)
        if len(line) > MAX_LINE
    ]
    assert not bad, f"{path.name}: {len(bad)} code line(s) over {MAX_LINE} characters:\n  " + "\n  ".join(bad)


def test_figures_have_caption_and_alt(notebook):
    path, nb = notebook
    bad = []
    for i, c in _code_cells(nb):
        figures = sum(any(m in (o.get("data") or {}) for m in IMAGE_MIMES) for o in c.get("outputs", []))
        if not figures:
            continue
        meta = c.get("metadata", {}).get("mystnb", {})
        caption = (meta.get("figure") or {}).get("caption", "")
        alt = (meta.get("image") or {}).get("alt", "")
        problems = []
        if not str(caption).strip():
            problems.append("no mystnb.figure.caption")
        if not (meta.get("figure") or {}).get("name"):
            problems.append("no mystnb.figure.name")
        if not str(alt).strip():
            problems.append("no mystnb.image.alt")
        if figures > 1:
            problems.append(f"{figures} figures in one cell (one per cell, so each gets its caption)")
        if problems:
            bad.append(f"cell {i}: " + ", ".join(problems))
    assert not bad, f"{path.name}: figures without caption/alt metadata:\n  " + "\n  ".join(bad)


def test_title_cell_with_colab_badge(notebook):
    path, nb = notebook
    url, ref = nbtools.repository_setting(ROOT)
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown" and _src(first).startswith("# "), (
        f"{path.name}: the first cell must be the title cell (markdown starting with '# ')"
    )
    expected = f"{BADGE}({nbtools.colab_url(url, ref, path.stem)})"
    assert expected in _src(first), (
        f"{path.name}: the title cell must carry the Colab badge {expected}; "
        "run `python tools/notebooks.py sync` after changing repository.url/branch in _config.yml"
    )


def test_one_setup_cell_installing_the_release(notebook):
    path, nb = notebook
    url, ref = nbtools.repository_setting(ROOT)
    setup_cells = [i for i, c in _code_cells(nb) if nbtools.SETUP_CALL.search(_src(c))]
    assert len(setup_cells) == 1, f"{path.name}: {len(setup_cells)} setup cells (cfg = setup(...)) at {setup_cells}; want one"
    first_code = _code_cells(nb)[0][0]
    assert setup_cells[0] == first_code, f"{path.name}: the setup cell must be the first code cell (is cell {setup_cells[0]})"
    source = _src(nb["cells"][first_code])
    spec = nbtools.install_spec(url, ref)
    assert f'"{spec}"' in source and '"google.colab" in sys.modules' in source, (
        f"{path.name}: the setup cell must install {spec} on Colab; run `python tools/notebooks.py sync`"
    )


# ----------------------------------------------------------------------------- the tools
def _nb(*cells):
    return {"cells": [copy.deepcopy(c) for c in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _code(src, **meta):
    return {"cell_type": "code", "metadata": dict(meta), "source": src.splitlines(keepends=True), "outputs": [],
            "execution_count": None, "id": "x"}


def test_tags_moves_markers_into_tags():
    nb = _nb(
        _code("x = 1\nprint(x == 1)  # NBVAL_CHECK_OUTPUT"),
        _code("# NBVAL_IGNORE_OUTPUT\nprint(time.time())\n"),
        _code("# NBVAL_SKIP\nslow()", tags=["keep-me"]),
        _code("print(1)"),
    )
    assert nbtools.convert_markers(nb) == 3
    sources = [_src(c) for c in nb["cells"]]
    assert sources == ["x = 1\nprint(x == 1)", "print(time.time())\n", "slow()", "print(1)"]
    tags = [c["metadata"].get("tags") for c in nb["cells"]]
    assert tags == [["nbval-check-output"], ["nbval-ignore-output"], ["keep-me", "nbval-skip"], None]
    assert nbtools.convert_markers(nb) == 0  # idempotent


def test_tags_rejects_unknown_marker():
    with pytest.raises(ValueError, match="NBVAL_CHECK_OUTPUTS"):
        nbtools.convert_markers(_nb(_code("print(1)  # NBVAL_CHECK_OUTPUTS")))


def test_sync_rewrites_badge_and_install_line():
    title = {"cell_type": "markdown", "metadata": {}, "id": "t", "source": [
        "# A chapter\n", "\n",
        f"{BADGE}(https://colab.research.google.com/github/old/place/blob/main/chapters/07_x.ipynb)\n"]}
    setup = _code(
        'import sys, subprocess\n# on Colab, install the book\'s toolkit\nif "google.colab" in sys.modules:\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "-q",\n'
        '                    "git+https://github.com/old/place"],\n                   check=True)\n'
        "\nfrom cl_toolkit import setup\ncfg = setup(seed=0)\n"
    )
    nb = _nb(title, setup)
    url, ref = "https://github.com/someone/book", "v9.9.9"
    assert nbtools.sync_notebook(nb, "07_x", url, ref) == ["Colab badge", "install line"]
    assert "https://colab.research.google.com/github/someone/book/blob/v9.9.9/chapters/07_x.ipynb" in _src(nb["cells"][0])
    assert _src(nb["cells"][1]) == (
        "import sys, subprocess\n" + nbtools.install_block(url, ref) + "\nfrom cl_toolkit import setup\ncfg = setup(seed=0)\n"
    )
    assert max(map(len, _src(nb["cells"][1]).splitlines())) <= MAX_LINE
    assert nbtools.sync_notebook(nb, "07_x", url, ref) == []  # idempotent


def test_repository_setting_refuses_a_moving_branch(tmp_path):
    (tmp_path / "_config.yml").write_text("repository:\n  url: https://github.com/a/b\n  branch: main\n")
    with pytest.raises(ValueError, match="release tag or a commit"):
        nbtools.repository_setting(tmp_path)
    (tmp_path / "_config.yml").write_text("repository:\n  url: https://github.com/a/b\n  branch: v1.0.0\n")
    assert nbtools.repository_setting(tmp_path) == ("https://github.com/a/b", "v1.0.0")
