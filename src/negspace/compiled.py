"""numba, when it imports: the compiled loops of training/ and samplers/ use it, and every one of
them has a torch (or numpy) twin that runs where numba has no wheel."""

try:
    import numba
except ImportError:  # numba missing (a platform without its wheels): the torch paths run
    numba = None

AVAILABLE = numba is not None

__all__ = ["AVAILABLE", "numba"]
