"""Check an existing table version against its declared constraints.

One Ray Data pass counts row-check violations (with a few sample rows each);
``unique`` is an exact distributed group-by; null share, freshness and
distribution come from a profile made by the profiling tasks.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from raylake.quality.constraints import (
    CheckResult,
    Constraint,
    reference_sets,
    row_result,
    row_violations,
    table_check,
)
from raylake.quality.profiler import WHOLE

SAMPLE = 5


def validate_version(lake: Any, table: str, version: Any, constraints: list[Constraint],
                     conf: Any) -> tuple[list[CheckResult], int, int]:
    """Results per constraint, the version checked and its row count."""
    from raylake.quality.jobs import profile_table, table_dataset

    ds, resolved = table_dataset(lake, table, version)
    refs = reference_sets(lake, constraints)
    row_checks = [c for c in constraints if c.row_level]
    counts: dict[str, int] = {c.name: 0 for c in row_checks}
    samples: dict[str, list[dict]] = {c.name: [] for c in row_checks}
    rows = 0

    def block_checks(batch: pa.Table) -> pa.Table:
        """One row for ``batch``: its row count and, as JSON, each row check's violation
        count with up to ``SAMPLE`` violating rows."""
        masks = row_violations(batch, row_checks, refs)
        out = {name: [int(m.sum()), json.dumps(batch.filter(pa.array(m)).slice(0, SAMPLE).to_pylist(),
                                               default=str)] for name, m in masks.items()}
        return pa.table({"rows": [batch.num_rows], "checks": [json.dumps(out)]})

    for ref in ds.map_batches(block_checks, batch_format="pyarrow", batch_size=None,
                              num_cpus=conf.ray.data_task_cpus).to_arrow_refs():
        for part in ray.get(ref).to_pylist():
            rows += part["rows"]
            for name, (n, sample) in json.loads(part["checks"]).items():
                counts[name] += n
                if len(samples[name]) < SAMPLE:
                    samples[name] += json.loads(sample)[: SAMPLE - len(samples[name])]

    profile = None
    if any(c.check in ("null_share", "freshness", "distribution") for c in constraints):
        profile = profile_table(lake, table, resolved, conf)[0][WHOLE]
    results = []
    for c in constraints:
        if c.row_level:
            results.append(row_result(c, counts[c.name], rows, samples[c.name]))
        else:
            dups = _duplicates(ds, list(c.columns)) if c.check == "unique" else None
            results.append(table_check(c, rows=rows, profile=profile, duplicates=dups))
    return results, resolved, rows


def _duplicates(ds: ray.data.Dataset, columns: list[str]) -> int:
    """Rows beyond the first for every key that occurs more than once (exact)."""
    parts = max(2, int(ray.cluster_resources().get("CPU", 2)) * 2)
    counts = ds.select_columns(columns).groupby(columns, num_partitions=parts).count()
    total = 0
    for ref in counts.to_arrow_refs():
        c = ray.get(ref).column("count()").to_numpy()
        total += int(np.sum(c[c > 1] - 1))
    return total
