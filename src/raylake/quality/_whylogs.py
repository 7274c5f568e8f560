"""The one door to whylogs: every raylake process, Ray workers included, imports it here.

whylogs 1.6.4 (its last release) still uses ``np.unicode_``, which NumPy 2
removed; string and datetime columns then fail. NumPy 2's ``np.str_`` is the
same type, so the alias is set before whylogs is imported. Nothing outside
this package touches whylogs: ``raylake.quality.profile`` is the interface, so
the sketches could be replaced by Apache DataSketches directly.
"""

from __future__ import annotations

import logging

import numpy as np

if not hasattr(np, "unicode_"):
    np.unicode_ = np.str_  # type: ignore[attr-defined]

import whylogs as why  # noqa: E402
from whylogs.core import DatasetProfileView  # noqa: E402

# whylogs logs every profile it deserializes at INFO ("Attempting to read profile
# file as delimited ..."); raylake reads many, so only its warnings are kept.
logging.getLogger("whylogs").setLevel(logging.WARNING)

__all__ = ["DatasetProfileView", "why"]
