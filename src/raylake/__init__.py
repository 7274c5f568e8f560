"""raylake: data management for machine learning on Ray and Delta Lake."""

from raylake.errors import RaylakeError

__version__ = "0.1.0"

__all__ = ["RaylakeError", "__version__"]
