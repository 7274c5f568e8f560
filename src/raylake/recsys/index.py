"""The item index: the item-vectors table at a version as a nearest-neighbour index
(:class:`~raylake.models.ann.AnnIndex`), registered as ``recsys.index_model`` with the
``ann_index`` flavor.

The kind follows ``recsys.index``: ``auto`` is exact search below
``recsys.index_hnsw_from`` items and an HNSW graph from there (the crossing measured in
benchmarks/ann.py). The registered version's lineage names the vectors' table version and
the two-tower version that made them; its metrics the build time and the recall@500 of
the index against exact search on 200 item vectors as queries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from raylake.errors import ModelError, ModelNotFoundError, RunNotFoundError
from raylake.lake.runs import get_run
from raylake.lake.tables import Lake
from raylake.models.ann import (
    HNSW_EF_CONSTRUCTION,
    HNSW_EF_SEARCH,
    HNSW_M,
    AnnIndex,
)
from raylake.models.registry import ModelRegistry, ModelVersion
from raylake.recsys.vectors import read_item_vectors

RECALL_K = 500
RECALL_QUERIES = 200


def index_kind(conf: Any, items: int) -> str:
    """``exact`` or ``hnsw`` for an index of ``items`` items under ``recsys.index``."""
    kind = str(getattr(conf.recsys.index, "value", conf.recsys.index))
    if kind == "auto":
        return "exact" if items < int(conf.recsys.index_hnsw_from) else "hnsw"
    return kind


def recall_at_k(index: AnnIndex, queries: np.ndarray, k: int) -> float:
    """Mean share of each query's exact top ``k`` (clipped to the items) that ``index``
    returns. An item tied with the k-th best counts as one of them: items the towers never
    saw share one vector, and which of the tied ones come back is arbitrary."""
    k = min(k, len(index))
    _, got = index.search(queries, k)
    _, truth = AnnIndex(index.ids, index.vectors, "exact").search(queries, k)
    # Scores, not ids: a returned item is right when it scores at least the k-th best
    # (float32 sums in another order differ in the last digits: the tolerance).
    hits = got >= truth[:, -1:] - 1e-5
    return float(hits.mean())


def build_index(lake: Lake, conf: Any, run: Any, *, version: int | None = None,
                echo: Callable[[str], Any] | None = None) -> ModelVersion:
    """Build the index of ``recsys.item_vectors_table`` at ``version`` (latest if None) and
    register it as the next version of ``recsys.index_model``; returns that version. When
    the latest registered index was built from the same table version with the same kind,
    that one is returned and nothing is registered."""
    rc = conf.recsys
    table = rc.item_vectors_table
    dtab = lake.table(table, version)
    tv = dtab.version()
    ids, vectors, rest = read_item_vectors(lake, table, tv)
    if not len(ids):
        raise ModelError(f"{table}@{tv} has no item vectors; write them from a two-tower "
                         "version first, then build the index.")
    model_versions = sorted(set(rest["model_version"].to_pylist()))
    if len(model_versions) != 1:
        raise ModelError(f"{table}@{tv} mixes vectors of two-tower versions {model_versions}; "
                         "vectors of different versions are not comparable. Write the item "
                         "vectors of one version again.")
    towers, sources = _towers(lake, rc.tower_model, model_versions[0], rest)
    kind = index_kind(conf, len(ids))
    run.add_input(table=table, version=tv, role="item_vectors")
    run.add_input(model=towers["name"], version=towers["version"], role="towers")

    reg = ModelRegistry(lake)
    same = _same_index(reg, rc.index_model, table, tv, kind)
    if same is not None:
        run.add_output(model=same.name, version=same.version, stage=same.stage, skipped=True)
        run.metrics.update(skipped=True, index=same.ref)
        if echo is not None:
            echo(f"{same.ref} is already the {kind} index of {table}@{tv}; nothing registered")
        return same

    start = time.perf_counter()
    index = AnnIndex.build(ids, vectors, kind)
    build_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    sample = rng.choice(len(ids), size=min(RECALL_QUERIES, len(ids)), replace=False)
    start = time.perf_counter()
    recall = recall_at_k(index, vectors[sample], RECALL_K)
    metrics = {"build_s": round(build_s, 3), f"recall_at_{RECALL_K}": round(recall, 4),
               "recall_queries": len(sample), "items": len(ids), "dim": index.dim,
               "recall_check_s": round(time.perf_counter() - start, 3)}
    mv = reg.register(
        rc.index_model, index, flavor="ann_index",
        # The input is a query vector in the towers' space (a user tower's output).
        features=[{"name": "query_vector", "type": f"fixed_size_list<float>[{index.dim}]"}],
        training={"table": table, "version": tv, "rows": len(ids), "towers": towers,
                  "sources": sources},
        config={"kind": kind, "index": str(getattr(rc.index, "value", rc.index)),
                "index_hnsw_from": int(rc.index_hnsw_from),
                **({"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION,
                    "ef_search": HNSW_EF_SEARCH} if kind == "hnsw" else {})},
        metrics=metrics, run_id=run.run_id,
        description=f"{kind} index of {len(ids):,} item vectors of {towers['name']}:"
                    f"{towers['version']} ({table}@{tv})")
    run.add_output(model=mv.name, version=mv.version, stage=mv.stage, skipped=False)
    run.metrics.update(skipped=False, index=mv.ref, kind=kind, **metrics)
    if echo is not None:
        echo(f"{mv.ref}: {kind} index of {len(ids):,} items from {table}@{tv} "
             f"(built in {build_s:.2f} s, recall@{RECALL_K} {recall:.3f})")
    return mv


def _towers(lake: Lake, default_name: str, version: int,
            rest: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The two-tower version that wrote the vectors ({name, version}) and the tables it
    read, from the vectors' run record; its name falls back to ``recsys.tower_model``."""
    name, sources = default_name, []
    run_ids = sorted(set(rest["run_id"].to_pylist()))
    if len(run_ids) == 1:
        try:
            inputs = get_run(lake, str(run_ids[0])).get("inputs") or []
        except RunNotFoundError:
            inputs = []
        for i in inputs:
            if i.get("model") and i.get("version") == version:
                name = str(i["model"])
            elif i.get("table") is not None:
                sources.append({"table": i["table"], "version": i.get("version")})
    return {"name": name, "version": int(version)}, sources


def _same_index(reg: ModelRegistry, name: str, table: str, version: int,
                kind: str) -> ModelVersion | None:
    try:
        latest = reg.get(name, "latest")
    except ModelNotFoundError:
        return None
    t = latest.training or {}
    if (t.get("table"), t.get("version"), latest.config.get("kind")) == (table, version, kind):
        return latest
    return None
