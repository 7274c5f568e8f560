"""On-demand (request-time) feature views: Python functions over other views'
features and fields that arrive with the request (Feast's on-demand feature views).

A function takes a pandas DataFrame whose columns are the features of its
source views (plain names) and its request fields, and returns a DataFrame
with the declared output features, one row per input row. The same function
runs in offline retrieval (over each joined partition, in Ray tasks) and in
online lookups (over the rows read from the store), so training and serving
compute a derived feature by the same code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

from raylake.errors import ConfigError, TransformError

HIDDEN = "_rl_in__"  # prefix of source features fetched only as a function's inputs


@dataclass(frozen=True)
class OnDemandFeatureView:
    name: str
    function: str  # "package.module:function"
    sources: tuple[str, ...]  # feature views whose features the function reads
    request: tuple[tuple[str, pa.DataType], ...]  # fields sent with the request / entity rows
    features: tuple[tuple[str, pa.DataType], ...]
    description: str = ""

    @property
    def feature_names(self) -> list[str]:
        """The names of the view's output features, in declared order."""
        return [f for f, _ in self.features]

    @property
    def request_names(self) -> list[str]:
        """The names of the request fields the function reads, in declared order."""
        return [f for f, _ in self.request]

    def load(self) -> Callable[[pd.DataFrame], pd.DataFrame]:
        """The view's function, imported now; ConfigError when it cannot be (see
        :func:`load_function`)."""
        return load_function(self.function, self.name)


def load_function(path: str, view: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The callable at ``path`` (``"package.module:function"``), imported on this process;
    ConfigError naming on-demand view ``view`` when the path is malformed, cannot be
    imported or is not callable."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"On-demand view {view!r}: function {path!r} is not 'package.module:function'."
        )
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"On-demand view {view!r}: cannot import {path!r} ({exc}). Install the module "
            "on the driver and every Ray worker, or fix the path in conf/features/."
        ) from exc
    if not callable(fn):
        raise ConfigError(f"On-demand view {view!r}: {path!r} is not a function.")
    return fn


@dataclass(frozen=True)
class Plan:
    """What a request for features needs: stored features to fetch, functions to run."""

    fetch: dict[str, list[str]]  # view -> features, requested or needed as inputs
    requested: dict[str, list[str]]  # stored view -> features the caller asked for
    on_demand: list[tuple[OnDemandFeatureView, list[str]]]  # view, requested outputs

    def column(self, view: str, feature: str, full_feature_names: bool) -> str:
        """The output column of a fetched feature; inputs nobody asked for get a hidden name."""
        if feature in self.requested.get(view, []):
            return f"{view}__{feature}" if full_feature_names else feature
        return f"{HIDDEN}{view}__{feature}"


def plan(registry: Any, wanted: dict[str, list[str]]) -> Plan:
    """The :class:`Plan` for ``wanted`` (view -> features): stored views' features as asked,
    plus every feature of each on-demand view's source views, fetched as its inputs."""
    requested = {v: list(fs) for v, fs in wanted.items() if v not in registry.on_demand}
    fetch = {v: list(fs) for v, fs in requested.items()}
    odfvs = []
    for name, outs in wanted.items():
        odfv = registry.on_demand.get(name)
        if odfv is None:
            continue
        odfvs.append((odfv, list(outs)))
        for src in odfv.sources:
            have = fetch.setdefault(src, [])
            have += [f for f in registry.view(src).feature_names if f not in have]
    return Plan(fetch, requested, odfvs)


def inputs_frame(odfv: OnDemandFeatureView, plan_: Plan, registry: Any,
                 columns: dict[str, Any], full_feature_names: bool, n: int) -> pd.DataFrame:
    """The function's input: source features under plain names, then request fields."""
    data: dict[str, Any] = {}
    for src in odfv.sources:
        for f in registry.view(src).feature_names:
            data[f] = _positional(columns[plan_.column(src, f, full_feature_names)])
    for field, _ in odfv.request:
        if field not in columns:
            raise ConfigError(
                f"On-demand view {odfv.name!r} needs request field {field!r}; send it with "
                "the entity rows (or in 'entities' of an online request)."
            )
        data[field] = _positional(columns[field])
    return pd.DataFrame(data, index=pd.RangeIndex(n))


def _positional(values: Any) -> Any:
    # A Series aligns on its index when framed; the rows here align by position.
    return values.reset_index(drop=True) if isinstance(values, pd.Series) else values


def run(odfv: OnDemandFeatureView, fn: Callable, inputs: pd.DataFrame,
        outputs: list[str]) -> dict[str, pa.Array]:
    """Calls the function and checks what it returns: each output as an Arrow array of its type."""
    try:
        result = fn(inputs)
    except Exception as exc:  # the user's code: any failure is reported as theirs
        raise TransformError(
            f"On-demand view {odfv.name!r}: {odfv.function} raised {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(result, pd.DataFrame) or len(result) != len(inputs):
        got = f"{type(result).__name__} of {len(result)} rows" if hasattr(result, "__len__") \
            else type(result).__name__
        raise TransformError(
            f"On-demand view {odfv.name!r}: {odfv.function} must return a DataFrame with one "
            f"row per input row ({len(inputs)}); it returned {got}."
        )
    types = dict(odfv.features)
    out = {}
    for f in outputs:
        if f not in result.columns:
            raise TransformError(
                f"On-demand view {odfv.name!r}: {odfv.function} returned no column {f!r} "
                f"(it returned {list(result.columns)})."
            )
        try:
            out[f] = pa.array(result[f].reset_index(drop=True), type=types[f], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise TransformError(
                f"On-demand view {odfv.name!r}: column {f!r} is not {types[f]} ({exc})."
            ) from exc
    return out


def apply_to_table(table: pa.Table, plan_: Plan, registry: Any,
                   full_feature_names: bool) -> pa.Table:
    """Adds each on-demand view's outputs to a joined block and drops hidden inputs."""
    if plan_.on_demand:
        frame = table.to_pandas()
        columns = {c: frame[c] for c in frame.columns}
        for odfv, outs in plan_.on_demand:
            inputs = inputs_frame(odfv, plan_, registry, columns, full_feature_names, len(frame))
            for f, arr in run(odfv, odfv.load(), inputs, outs).items():
                table = table.append_column(
                    pa.field(f"{odfv.name}__{f}" if full_feature_names else f, arr.type), arr)
    hidden = [c for c in table.column_names if c.startswith(HIDDEN)]
    return table.drop_columns(hidden) if hidden else table


def check(odfv: OnDemandFeatureView, registry: Any) -> None:
    """Runs the function on one row of nulls typed as declared: catches a wrong path, a
    missing output column or a crash on missing values before any job uses it."""
    cols: dict[str, Any] = {}
    for src in odfv.sources:
        for f, t in registry.view(src).features:
            cols[f] = pa.nulls(1, t).to_pandas()
    for f, t in odfv.request:
        cols[f] = pa.nulls(1, t).to_pandas()
    run(odfv, odfv.load(), pd.DataFrame(cols, index=pd.RangeIndex(1)), odfv.feature_names)
