"""cl_toolkit: the small PyTorch package behind the book's chapters."""

import os as _os

# On a busy machine, OpenMP threads that spin-wait on each other slow small-tensor loops
# several-fold; waiting passively costs nothing measurable otherwise. Must precede `import torch`.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .config import Settings, seed_everything, setup

__version__ = "0.1.0"
__all__ = ["Settings", "seed_everything", "setup", "__version__"]
