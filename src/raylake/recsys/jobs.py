"""Recommendation jobs: ``raylake recsys-train`` (and, in ``jobs_*.py`` beside this file,
the impressions table and the server).

``recsys-train experiment=recsys``: the two-tower on Ray Train from the clicks before the
holdout; the offline quality table (retrieval, the ranker's re-ranking, popularity,
random and the generator's truth) printed and recorded; the towers registered with that
quality; every item's vector written to the lake by batch inference; the nearest-
neighbour index built from that table version and registered. See
docs/recommendations.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raylake.runner import JobContext, job


@job("recsys-train", help="train the two-tower retrieval model on Ray Train, print the "
                          "offline quality, write item vectors and register the index "
                          "(experiment=recsys)")
def recsys_train(ctx: JobContext, *, kill_at: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit, evaluate, register; then item vectors and the index. ``kill_at`` (tests): a
    worker dies once after that epoch's checkpoint."""
    import torch
    from omegaconf import OmegaConf

    from raylake.models.registry import ModelRegistry
    from raylake.recsys import evaluate, scoring, towers
    from raylake.recsys.index import build_index
    from raylake.recsys.split import holdout_start
    from raylake.recsys.vectors import write_item_vectors

    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    r = conf.recsys
    start = holdout_start(lake, conf)
    rank = scoring.offline_ranker(lake, conf, start)  # a leaky online store fails here, early
    clicks = towers.training_clicks(lake, conf, start)
    run.add_input(table=clicks.table, version=clicks.version, rows=len(clicks.users),
                  role="training")
    model, stats = towers.fit(lake, conf, clicks, run.run_id, kill_at=kill_at)
    for epoch, loss in enumerate(stats["loss"], start=1):
        ctx.echo(f"two-tower epoch {epoch}: in-batch loss {loss:.4f}")

    imps = lake.read(r.impressions_table, clicks.version,
                     columns=["ts", "user_id", "item_id", "clicked"])
    item_ids = np.sort(lake.read(r.items_table, columns=["item_id"])["item_id"].to_numpy())
    h = evaluate.holdout(imps, item_ids, start, int(r.eval_users))
    codes = _codes(clicks.spec, h.users, item_ids)
    with torch.no_grad():
        uv = model.user_vectors(torch.tensor(codes["user_id"])).numpy()
        iv = model.item_vectors(torch.tensor(codes["item_id"])).numpy()
    quality = evaluate.evaluate(h, uv, codes["user_id"] > 0, iv, int(r.candidates),
                                rank.score if rank else None, _truth_dir(conf))
    if rank:
        quality["ranker"] = rank.ref
    for line in evaluate.table_lines(quality):
        ctx.echo(line)
    run.metrics.update({"two_tower": stats, "quality": quality,
                        "holdout_start": start.isoformat()})

    registry = ModelRegistry(lake)
    mv = registry.register(
        r.tower_model, model, flavor="torch",
        features=[("user_id", "string"), ("item_id", "string")],
        training={"table": clicks.table, "version": clicks.version, "rows": len(clicks.users),
                  "before": start.isoformat()},
        config={"recsys": OmegaConf.to_container(OmegaConf.structured(r), enum_to_str=True)},
        metrics={"quality": quality, "two_tower": stats}, run_id=run.run_id,
        preprocessing=clicks.spec.to_dict(),
        description=f"two-tower retrieval on clicks of {clicks.table}@{clicks.version} "
                    f"before {start:%Y-%m-%d}")
    run.add_output(model=r.tower_model, version=mv.version, stage=mv.stage)
    vectors = write_item_vectors(lake, conf, mv.ref, run)
    index = build_index(lake, conf, run)
    m = quality["methods"]
    best = "pipeline" if "pipeline" in m else "two_tower"
    c = quality["candidates"]
    summary = (f"recsys-train: {mv.ref} on {stats['clicks']:,} clicks ({stats['fit_s']:.0f} s, "
               f"{stats['workers']} workers); recall@{c} {m['two_tower'][f'recall@{c}']:.4f} "
               f"(popularity {m['popularity'][f'recall@{c}']:.4f}); {best} ndcg@20 "
               f"{m[best]['ndcg@20']:.4f}, recall@20 {m[best]['recall@20']:.4f}; "
               f"item vectors {vectors[0]}@{vectors[1]}; index {index.ref}")
    return {"model": model, "version": mv.version, "quality": quality, "index": index,
            "vectors": vectors, "summary": summary}


def _codes(spec: Any, users: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
    """The spec's codes of user and item ids (0: not seen in training)."""
    from raylake.recsys import towers

    return {col: towers.encode_ids(spec, col, ids) for col, ids in (("user_id", users),
                                                           ("item_id", items))}


def _truth_dir(conf: Any) -> str | None:
    """``recsys.truth_dir``, else the generated world's truth/ beside the ingested files."""
    if conf.recsys.truth_dir:
        return str(conf.recsys.truth_dir)
    root = getattr(conf.dataset, "root", None)
    return f"{root}/truth" if root else None
