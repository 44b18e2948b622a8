"""The version of lpim, in a module of its own so that any part of lpim can read it.

`lpim.__version__` re-exports it; modules inside lpim import it from here, never from the package
root (which imports most of lpim).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
