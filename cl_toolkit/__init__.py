from .config import Settings, seed_everything, setup

__version__ = "0.1.0"
__all__ = ["Settings", "seed_everything", "setup", "__version__"]
