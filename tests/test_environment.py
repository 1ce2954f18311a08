"""The environment: packages that must stay out of it.

The registry's torchvision for the CPU torch this book pins is a CUDA build: it fails to
load ("operator torchvision::nms does not exist"), and once it is installed
``import transformers`` and ``import sentence_transformers`` fail too. open_clip, timm and
lightly pull it in. The book's images are made with numpy, PIL and torch instead.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

KEPT_OUT = ("torchvision", "open_clip", "timm", "lightly")


@pytest.mark.parametrize("name", KEPT_OUT)
def test_package_is_not_installed(name):
    spec = importlib.util.find_spec(name)
    assert spec is None, (
        f"{name} is importable from {spec.origin}: it breaks transformers on the CPU torch; "
        f"remove it with `pip uninstall -y {name}`"
    )


def test_transformers_and_sentence_transformers_import_in_a_fresh_interpreter():
    code = "import transformers, sentence_transformers; from transformers import CLIPModel"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
