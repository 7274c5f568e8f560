"""Computer-vision jobs: ``raylake vision-ingest`` and ``raylake vision-train``.

- ``vision-ingest dataset=mnist_5k``: every image table of the dataset (``dataset.images``)
  into the lake, bad images quarantined with the reason (:mod:`raylake.ingest.images`).
- ``vision-train train=cnn``: the CNN on Ray Train over a pinned image-table version,
  registered as an ``image_classifier`` model with the table version in its lineage.
Scoring goes through the existing ``batch-predict`` job and model server.
"""

from __future__ import annotations

from typing import Any

from raylake.config.schema import RaylakeConfig
from raylake.errors import ConfigError
from raylake.runner import JobContext, job


def _check_ingest(conf: RaylakeConfig) -> None:
    if not conf.dataset.images:
        raise ConfigError(f"dataset {conf.dataset.name!r} has no image tables "
                          "(dataset.images); use e.g. `raylake vision-ingest dataset=mnist_5k`.")


@job("vision-ingest", help="ingest only a dataset's image tables (folder, CSV pixels, "
                           "Parquet bytes; `raylake ingest` does them too)", check=_check_ingest)
def vision_ingest(ctx: JobContext) -> dict[str, Any]:
    """Ingest each image table of the dataset only (`raylake ingest` does these and the
    tabular tables alike)."""
    from raylake.ingest.images import ingest_image_tables

    results = ingest_image_tables(ctx.lake, dict(ctx.conf.dataset.images), ctx.record, ctx.echo,
                                  job="vision-ingest")
    if all(r.rows_written == 0 and r.rows_quarantined == 0 for r in results):
        ctx.record.status = "skipped"
    return {"tables": results, "summary": f"run {ctx.record.run_id}: {ctx.record.status}; "
                                          f"lake at {ctx.lake.root}"}


def _check_train(conf: RaylakeConfig) -> None:
    if conf.train.trainer != "cnn":
        raise ConfigError(f"vision-train trains train.trainer=cnn, not "
                          f"{conf.train.trainer!r}: `raylake vision-train train=cnn` "
                          "(or train=cnn_gpu).")


@job("vision-train", help="train the image CNN (train=cnn|cnn_gpu) on Ray Train over an image "
                          "table version and register it (flavor image_classifier)",
     check=_check_train)
def vision_train(ctx: JobContext, *, kill_at: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit, score the held-out test split, register with the table version as lineage.
    ``kill_at`` ({"step", "marker", "rank"}, tests only): that worker dies once there."""
    from raylake.models.flavors.image_classifier import NAME as FLAVOR
    from raylake.models.registry import ModelRegistry
    from raylake.models.spec import FeatureSpec
    from raylake.vision.fit import fit

    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    tcfg = conf.train
    model, metrics, version = fit(lake, conf, run.run_id, kill_at=kill_at)
    run.add_input(table=tcfg.table, version=version, rows=metrics["train_images"]
                  + metrics["test_images"], role="training")
    run.metrics.update(metrics)
    for h in metrics["history"]:
        ctx.echo(f"epoch {h['epoch']}: loss {h['train_loss']:.4f}, train accuracy "
                 f"{h['train_accuracy']:.4f}, {h['images_per_s']:.0f} img/s")
    out: dict[str, Any] = {"metrics": metrics, "model": model, "version": None}
    line = (f"vision-train cnn on {tcfg.table}@{version}: test accuracy "
            f"{metrics['test_accuracy']:.4f} ({metrics['test_images']} images), "
            f"{metrics['workers']} workers, {metrics['steps']} steps, {metrics['precision']}, "
            f"{metrics['fit_s']:.0f} s")
    if tcfg.register:
        from omegaconf import OmegaConf

        mv = ModelRegistry(lake).register(
            tcfg.model_name, model, flavor=FLAVOR,
            features=[{"name": "image", "type": "binary", "encoding": "image"}],
            training={"table": tcfg.table, "version": version,
                      "rows": metrics["train_images"], "test_rows": metrics["test_images"]},
            config={"train": OmegaConf.to_container(OmegaConf.structured(tcfg),
                                                    enum_to_str=True)},
            metrics={k: v for k, v in metrics.items() if k != "contract"},
            run_id=run.run_id, preprocessing=FeatureSpec([], []).to_dict(),
            description=f"CNN on {tcfg.table}@{version}")
        run.add_output(model=tcfg.model_name, version=mv.version, stage=mv.stage)
        out["version"] = mv.version
        line += f"; registered {mv.ref} (flavor {FLAVOR})"
    out["summary"] = line
    return out
