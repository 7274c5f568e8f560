"""Data quality: profiles (whylogs behind raylake's interface), drift, constraints."""

from raylake.quality.drift import ColumnDrift, DriftReport, compare
from raylake.quality.profile import ColumnSummary, Profile

__all__ = ["ColumnDrift", "ColumnSummary", "DriftReport", "Profile", "compare"]
