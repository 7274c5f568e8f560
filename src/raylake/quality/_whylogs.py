"""The one door to whylogs: every raylake process, Ray workers included, imports it here.

whylogs 1.6.4 (its last release) still uses ``np.unicode_``, which NumPy 2
removed; string and datetime columns then fail. NumPy 2's ``np.str_`` is the
same type, so the alias is set before whylogs is imported. Nothing outside
this package touches whylogs: ``raylake.quality.profile`` is the interface.
``raylake.quality.sketch`` fills whylogs's own metrics (the same Apache
DataSketches sketches, from ``whylogs_sketching``) straight from Arrow arrays, so
its profiles are whylogs profiles, and ``raylake.quality.merging`` merges serialized
profiles reading whylogs's own messages; the names they need are exported here.
"""

from __future__ import annotations

import logging

import numpy as np

if not hasattr(np, "unicode_"):
    np.unicode_ = np.str_  # type: ignore[attr-defined]

import whylogs as why  # noqa: E402

# Apache DataSketches as whylogs builds and uses it (raylake.quality.sketch fills them).
import whylogs_sketching as sketching  # type: ignore[import-not-found]  # noqa: E402
from whylogs.core import DatasetProfileView  # noqa: E402
from whylogs.core.metrics import (  # noqa: E402
    CardinalityMetric,
    ColumnCountsMetric,
    DistributionMetric,
    FrequentItemsMetric,
    IntsMetric,
    MetricConfig,
    TypeCountersMetric,
)
from whylogs.core.metrics.maths import (  # noqa: E402
    VarianceM2Result,
    parallel_variance_m2,
    welford_online_variance_m2,
)
from whylogs.core.metrics.metric_components import MetricComponent  # noqa: E402
from whylogs.core.proto import (  # noqa: E402
    ChunkHeader,
    ChunkMessage,
    ColumnMessage,
    DatasetProfileHeader,
    DatasetSegmentHeader,
    FrequentItemsSketchMessage,
    HllSketchMessage,
    KllSketchMessage,
    MetricComponentMessage,
)
from whylogs.core.view import ColumnProfileView  # noqa: E402
from whylogs.core.view.dataset_profile_view import WHYLOGS_MAGIC_HEADER_BYTES  # noqa: E402

# whylogs logs every profile it deserializes at INFO ("Attempting to read profile
# file as delimited ..."); raylake reads many, so only its warnings are kept.
logging.getLogger("whylogs").setLevel(logging.WARNING)

__all__ = [
    "CardinalityMetric", "ChunkHeader", "ChunkMessage", "ColumnCountsMetric", "ColumnMessage",
    "ColumnProfileView", "DatasetProfileHeader", "DatasetProfileView", "DatasetSegmentHeader",
    "DistributionMetric", "FrequentItemsMetric", "FrequentItemsSketchMessage",
    "HllSketchMessage", "IntsMetric", "KllSketchMessage", "MetricComponent",
    "MetricComponentMessage",
    "MetricConfig", "TypeCountersMetric", "VarianceM2Result", "WHYLOGS_MAGIC_HEADER_BYTES",
    "parallel_variance_m2", "sketching", "welford_online_variance_m2", "why",
]
