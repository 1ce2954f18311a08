"""The Colab install, the way Colab runs it.

Each chapter's setup cell installs ``cl_toolkit`` with
``pip install git+<repository.url>@<repository.branch>`` when ``google.colab`` is imported.
This test does exactly that, in a fresh virtual environment that already holds a torch of
its own (as Colab does), with the address pointed at a local clone of the working tree
(``git+file://...``, the release tag created in the clone):

1. runs the first chapter's setup cell there with ``google.colab`` faked (so it installs),
   then every chapter's setup cell in the same process (IPython magics dropped), so the
   install line, ``setup()`` and every import of every chapter are exercised;
2. imports ``cl_toolkit`` and runs a cheap cell (InfoNCE against a plain loop);
3. asserts that torch was not replaced, and, in the ``floor`` variant, that every dependency
   is at the floor of ``pyproject.toml`` (``constraints-floor.txt``, applied as
   ``PIP_CONSTRAINT`` to the cell's own pip command, as on a Colab with those older releases).

Variants: ``newest`` (pip picks the newest releases that satisfy ``pyproject.toml``) and
``floor``. It needs the package index (or a local mirror) and takes a few minutes;
``CL_SKIP_COLAB_INSTALL=1`` skips it on a machine without one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("book_notebook_tools", ROOT / "tools" / "notebooks.py")
nbtools = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nbtools)

FLOORS = ROOT / "constraints-floor.txt"
PACKAGE_FILES = ["pyproject.toml", "README.md", "cl_toolkit"]  # what `pip install` of the package reads

pytestmark = pytest.mark.skipif(
    os.environ.get("CL_SKIP_COLAB_INSTALL") == "1", reason="CL_SKIP_COLAB_INSTALL=1"
)


def _floors() -> dict[str, str]:
    pins = {}
    for line in FLOORS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def _pyproject_floors() -> dict[str, str]:
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", text, flags=re.S | re.M).group(1)
    deps = re.findall(r"\"([^\"]+)\"", block)
    floors = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(?:>=\s*([0-9][^,;\s]*))?.*", dep)
        floors[m.group(1).lower()] = m.group(2)
    return floors


def test_floors_file_matches_pyproject():
    """Every dependency but torch has a floor in pyproject.toml, pinned in constraints-floor.txt."""
    declared, pinned = _pyproject_floors(), _floors()
    missing = sorted(n for n, v in declared.items() if v is None)
    assert not missing, f"pyproject.toml: dependencies without a floor (name>=X): {missing}"
    expected = {n: v for n, v in declared.items() if n != "torch"}
    assert pinned == expected, (
        "constraints-floor.txt must pin each pyproject.toml dependency (torch excepted) to its floor:\n"
        f"  pyproject: {expected}\n  constraints: {pinned}"
    )


def _run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))[:300]}\nexit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}",
                    pytrace=False)
    return out


@pytest.fixture(scope="module")
def release_clone(tmp_path_factory):
    """A git repository of the working tree's package files, tagged with the configured release."""
    url, ref = nbtools.repository_setting(ROOT)
    repo = tmp_path_factory.mktemp("clone") / "contrastive-learning-book"
    repo.mkdir()
    for name in PACKAGE_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, repo / name)
    git = ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@localhost",
           "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"]
    _run([*git, "init", "-q"])
    _run([*git, "add", "-A"])
    _run([*git, "commit", "-q", "-m", "release"])
    _run([*git, "tag", ref])
    return url, ref, repo


@pytest.fixture(scope="module")
def torch_venv(tmp_path_factory):
    """A fresh venv holding only the torch of this environment's version ("Colab's own torch")."""
    import torch

    version = torch.__version__.split("+")[0]
    venv = tmp_path_factory.mktemp("venv") / "base"
    _run([sys.executable, "-m", "venv", str(venv)])
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"torch=={version}"], timeout=900)
    return venv


SETUP_PRELUDE = """
import importlib.machinery, sys, types
colab = types.ModuleType("google.colab")   # what the setup cell looks for
colab.__spec__ = importlib.machinery.ModuleSpec("google.colab", None)  # find_spec() works, as on Colab
sys.modules["google.colab"] = colab
"""

CHEAP_CELL = """
import torch, cl_toolkit
from cl_toolkit.losses import info_nce
torch.manual_seed(0)
q, k = torch.randn(6, 16), torch.randn(6, 16)
qn, kn = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(k, dim=-1)
loop = 0.0
for i in range(6):
    row = [float(qn[i] @ kn[j]) / 0.1 for j in range(6)]
    loop += -(row[i] - torch.logsumexp(torch.tensor(row), 0).item()) / 6
print("info_nce agrees with the loop:", abs(info_nce(q, k, temperature=0.1).item() - loop) < 1e-4)
"""

PROBE = """
import json, os, importlib.metadata as md, torch
names = json.loads(os.environ["PROBE_NAMES"])
print(json.dumps({"torch": [torch.__version__, torch.__file__, os.stat(torch.__file__).st_mtime_ns],
                  "versions": {n: md.version(n) for n in names}}))
"""


def _setup_cell(nb_path: Path, spec: str) -> str:
    nb = nbtools.read_notebook(nb_path)
    i = nbtools.setup_cell_index(nb)
    assert i is not None, f"{nb_path.name}: no setup cell"
    source = "".join(nb["cells"][i]["source"])
    assert nbtools.GIT_SPEC.search(source), f"{nb_path.name}: the setup cell has no git+ install line"
    source = nbtools.GIT_SPEC.sub(spec, source)
    # IPython magics and shell lines are Colab's, not Python's
    return "\n".join("pass  # " + l if l.lstrip().startswith(("%", "!")) else l for l in source.splitlines())


@pytest.mark.parametrize("variant", ["newest", "floor"])
def test_setup_cells_install_and_run(variant, release_clone, torch_venv, tmp_path):
    url, ref, repo = release_clone
    venv = tmp_path / "venv"
    shutil.copytree(torch_venv, venv, symlinks=True)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_CONSTRAINT", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", CL_QUIET="1", CL_PROFILE="quick", MPLBACKEND="Agg",
               OMP_NUM_THREADS="1", PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    if variant == "floor":
        env["PIP_CONSTRAINT"] = str(FLOORS)
    floors = _floors()
    env["PROBE_NAMES"] = json.dumps(sorted(floors))

    def probe():
        return json.loads(_run([python, "-c", PROBE], env={**env, "PROBE_NAMES": json.dumps([])}).stdout)["torch"]

    torch_before = probe()
    spec = f"git+file://{repo}@{ref}"
    chapters = nbtools.chapter_notebooks(ROOT)
    assert chapters
    # One process, as one Colab session: the first chapter's cell installs (google.colab
    # faked); every chapter's setup cell then runs, its imports included, with the package
    # installed. (tests/test_notebooks.py checks that every setup cell carries the same
    # install line.)
    parts = [SETUP_PRELUDE]
    for n, nb_path in enumerate(chapters):
        parts.append(f"print('== setup cell of {nb_path.name}', flush=True)")
        parts.append(_setup_cell(nb_path, spec))
        if n == 0:
            parts.append('sys.modules.pop("google.colab", None)')
    script = tmp_path / "setup_cells.py"
    script.write_text("\n".join(parts) + "\n")
    _run([python, str(script)], env=env, cwd=tmp_path, timeout=1200)
    cheap = _run([python, "-c", textwrap.dedent(CHEAP_CELL)], env=env, cwd=tmp_path)
    assert "info_nce agrees with the loop: True" in cheap.stdout, cheap.stdout

    after = json.loads(_run([python, "-c", PROBE], env=env).stdout)
    assert after["torch"] == torch_before, f"the install replaced torch: {torch_before} -> {after['torch']}"
    if variant == "floor":
        off = {n: (v, after["versions"][n]) for n, v in floors.items() if after["versions"][n] != v}
        assert not off, f"not at the floor (wanted, installed): {off}"
