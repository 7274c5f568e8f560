"""``raylake synth augment``: rebalance a training set's minority class with synthetic rows.

Only the train split is touched: a synthesizer (``synth=...``) is fitted on the minority
class's rows older than the split time (``train.split.valid_start`` unless
``synth.augment.before``) and its samples, whose times stay within the rows it learnt
from (the transformer keeps each column's bounds), are added until the class makes
``synth.augment.target_share`` of the train split. Validation and test rows are never
seen nor added to, so a model trained on the new version is judged on the same real rows
as before. The result is a new version of the training set (or ``synth.augment
.output_table``): the earlier version stays readable by time travel, and the run record
names both, the synthesizer's settings and how many rows were added.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pandas as pd
import pyarrow as pa

from raylake.errors import ConfigError, SynthError, did_you_mean
from raylake.lake.clock import parse_time
from raylake.lake.commit import write_table
from raylake.lake.runs import RunRecord
from raylake.lake.tables import Lake
from raylake.synth import data as sdata


def augment(lake: Lake, conf: Any, run: RunRecord) -> dict[str, Any]:
    """Add synthetic minority rows to the train split; returns what was done."""
    from raylake.synth import fit as sfit

    a, s = conf.synth.augment, conf.synth
    table = a.table or conf.training_set.output_table
    label = a.label or conf.training_set.label_name
    time_column = a.time_column or conf.train.split.time_column
    before_text = a.before or conf.train.split.valid_start
    if not table or not label:
        raise ConfigError("synth augment needs the training set and its label: "
                          "synth.augment.table=training/flights_delay synth.augment.label=delayed "
                          "(or training_set.output_table and training_set.label_name).")
    if not time_column or not before_text:
        raise ConfigError("synth augment needs the train split's end: synth.augment.before="
                          "2013-10-01 and synth.augment.time_column=time_hour (or "
                          "train.split.valid_start and train.split.time_column).")
    before = parse_time(str(before_text), "synth.augment.before")
    version = lake.version(table)
    arrow = lake.read(table, version)
    for key, col in (("synth.augment.label", label), ("synth.augment.time_column", time_column)):
        if col not in arrow.column_names:
            raise SynthError(f"{key}={col!r}: {table}@{version} has no such column."
                             f"{did_you_mean(col, arrow.column_names)} Its columns: "
                             f"{', '.join(arrow.column_names)}.")
    frame = arrow.to_pandas()
    times = pd.to_datetime(frame[time_column], utc=True)
    in_train = (times < pd.Timestamp(before)).to_numpy()
    train = frame[in_train]
    counts = train[label].value_counts()
    if len(counts) < 2:
        raise SynthError(f"The train split of {table}@{version} (before {before.isoformat()}) "
                         f"has {len(counts)} class(es) of {label!r}: nothing to rebalance.")
    minority = _minority(counts, a.minority, label)
    n_min, n_train = int(counts[minority]), len(train)
    add = math.ceil((a.target_share * n_train - n_min) / (1 - a.target_share))
    run.add_input(table=table, version=version, rows=len(frame), role="training-set")
    result: dict[str, Any] = {"table": table, "source_version": version, "label": label,
                              "minority": _plain(minority), "before": before.isoformat(),
                              "train_rows": n_train, "minority_rows": n_min,
                              "share_before": n_min / n_train, "target_share": a.target_share,
                              "added": 0, "version": None}
    if add <= 0:
        result["note"] = (f"the class already makes {n_min / n_train:.1%} of the train split "
                          f"(target {a.target_share:.0%}): nothing added")
        return result
    rows = train[train[label] == minority].reset_index(drop=True)
    real = sdata.RealRows(rows, rows.iloc[:0], version, len(rows),
                          [{"name": f.name, "type": str(f.type)} for f in arrow.schema])
    synth, stats = sfit.fit(lake, conf, real, run.run_id)
    fake = synth.sample(add, seed=s.seed)
    fake[label] = minority  # the class is what was learnt from; never left to chance
    ftimes = pd.to_datetime(fake[time_column], utc=True)
    late = int((ftimes >= pd.Timestamp(before)).sum())
    if late:  # bounds are kept, so only a rounding at the edge could land here
        fake = fake[(ftimes < pd.Timestamp(before)).to_numpy()]
    extra = pa.Table.from_pandas(fake[arrow.column_names], schema=arrow.schema,
                                 preserve_index=False)
    out = a.output_table or table
    app_id = f"raylake.synth-augment/{table}@{version}/{run.run_id}"
    if out == table:
        # In place: only the synthetic rows are appended (a commit that removes nothing, so
        # rows another writer committed since `version` are kept).
        written = write_table(lake, out, extra, mode="append", app_id=app_id,
                              run_id=run.run_id, job="synth-augment")
        total = len(frame) + extra.num_rows
    else:
        combined = pa.concat_tables([arrow, extra])
        written = write_table(lake, out, combined, mode="overwrite", app_id=app_id,
                              run_id=run.run_id, job="synth-augment")
        total = combined.num_rows
    run.add_output(table=out, version=written, rows=total,
                   synthetic_rows=extra.num_rows, minority=_plain(minority))
    run.metrics.update({"added": extra.num_rows, "fit": stats, "synthesizer": str(s.kind),
                        "share_after": (n_min + extra.num_rows) / (n_train + extra.num_rows)})
    result.update(added=extra.num_rows, version=written, output_table=out,
                  share_after=(n_min + extra.num_rows) / (n_train + extra.num_rows),
                  synthesizer=str(s.kind))
    return result


def summary(result: dict[str, Any]) -> list[str]:
    """The augmentation in a line or two."""
    head = (f"synth augment {result['table']}@{result['source_version']}: class "
            f"{result['label']}={result['minority']!r} makes {result['share_before']:.1%} of "
            f"{result['train_rows']:,} train rows (before {result['before']})")
    if not result["added"]:
        return [head, f"  {result.get('note', 'nothing added')}"]
    return [head, f"  added {result['added']:,} {result['synthesizer']} rows -> "
                  f"{result['share_after']:.1%}; wrote {result['output_table']}@{result['version']}"]


def _minority(counts: pd.Series, wanted: str | None, label: str) -> Any:
    if wanted is None:
        return counts.idxmin()
    for value in counts.index:
        if str(value) == str(wanted) or str(_plain(value)).lower() == str(wanted).lower():
            return value
    raise SynthError(f"synth.augment.minority={wanted!r} is not a class of {label!r} in the "
                     f"train split; its classes: {', '.join(map(str, counts.index))}.")


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, dt.datetime):
        return v.isoformat()
    return v
