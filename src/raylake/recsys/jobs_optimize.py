"""``raylake recsys-optimize experiment=recsys``: the distilled ranker and the int8 MLP
ranker, registered as their own model versions, measured against the full ranker in the
same run (docs/recommendations.md, "Model optimization").

Needs the full ranker (``raylake train experiment=recsys``), the two-tower
(``raylake recsys-train experiment=recsys``) and the online store materialized to the
holdout start; the int8 step needs the MLP ranker (``raylake train experiment=recsys
train=torch_recsys``) and is skipped, saying so, without it. Prints one row per model
(NDCG@20, recall@20, predictions/s) and records them as each new version's metrics, so
``raylake models show recsys_ranker_distilled`` shows the trade-off.
"""

from __future__ import annotations

from typing import Any

from raylake.runner import JobContext, job


@job("recsys-optimize", help="distil the ranker into a small XGBoost and quantize the MLP "
                             "ranker to int8; NDCG@20, recall@20 and predictions/s of each "
                             "against the full ranker; registered (experiment=recsys)")
def recsys_optimize(ctx: JobContext, *, distill: dict[str, Any] | None = None,
                    max_ndcg_loss: float | None = None, max_rows: int | None = None,
                    speed_seconds: float | None = None) -> dict[str, Any]:
    """Distil, quantize, measure, register, promote what keeps its NDCG. Options (job
    keyword arguments; the ``recsys`` config has no optimization fields): ``distill``
    overrides the student's XGBoost parameters (``num_boost_round``, ``max_depth``, ...;
    :data:`~raylake.recsys.optimize.DISTILL_PARAMS`), ``max_ndcg_loss`` the promotion
    rule's 1%, ``max_rows`` the distillation sample, ``speed_seconds`` the timing per model.
    """
    from raylake.errors import ModelNotFoundError
    from raylake.models.flavors import get_flavor
    from raylake.models.flavors.torch_int8 import int8_engine, quantize
    from raylake.models.registry import ModelRegistry
    from raylake.models.spec import FeatureSpec
    from raylake.recsys import optimize as opt
    from raylake.recsys.scoring import open_ranker

    conf, lake, run = ctx.conf, ctx.lake, ctx.record
    registry = ModelRegistry(lake)
    limit = opt.MAX_NDCG_LOSS if max_ndcg_loss is None else float(max_ndcg_loss)
    seconds = opt.SPEED_SECONDS if speed_seconds is None else float(speed_seconds)

    teacher_mv, teacher_model = registry.load(conf.recsys.ranker_model)
    run.add_input(model=teacher_mv.name, version=teacher_mv.version, role="teacher")
    full = opt.Candidate("full", teacher_mv.name, teacher_model, teacher_mv.flavor,
                         FeatureSpec.from_dict(teacher_mv.preprocessing), teacher_mv.ref)
    try:
        bench = opt.Bench(lake, conf, open_ranker(lake, conf, teacher_mv.ref))
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(f"{exc} recsys-optimize re-ranks the two-tower's candidates: "
                                 "train it first with `raylake recsys-train "
                                 "experiment=recsys`.") from None
    run.add_input(model=bench.tower_ref.split(":")[0], version=int(bench.tower_ref.split(":")[1]),
                  role="towers")
    ctx.echo(f"recsys-optimize: {len(bench.holdout.users):,} holdout users x {bench.c} "
             f"two-tower candidates ({bench.tower_ref}); ranker rows from the online store in "
             f"{bench.lookup_s:.1f} s")

    # Distillation.
    rows, lineage = opt.train_rows(lake, conf, teacher_mv, max_rows or opt.DISTILL_MAX_ROWS)
    run.add_input(table=lineage["table"], version=lineage["version"], role="training-set",
                  rows=lineage["rows"])
    booster, fit = opt.distill(full, rows, distill)
    del rows
    ctx.echo(f"distilled {teacher_mv.ref} into {fit['rounds']} trees of depth "
             f"{fit['params'].get('max_depth')} on {fit['rows']:,} rows ({fit['fit_s']:.1f} s)")
    student = opt.Candidate("distilled", opt.DISTILLED_MODEL, booster, "xgboost", full.spec)
    cands = [full, student]

    # int8: the MLP ranker, where torch has an int8 engine.
    mlp = quant = None
    skipped: str | None = None
    try:
        mlp_mv, mlp_model = registry.load(opt.MLP_MODEL)
    except ModelNotFoundError:
        skipped = (f"no {opt.MLP_MODEL} registered (train it with `raylake train "
                   "experiment=recsys train=torch_recsys`)")
    else:
        try:
            engine = int8_engine()
        except Exception as exc:  # ModelError: this torch build has no int8 kernels
            skipped = str(exc)
        else:
            run.add_input(model=mlp_mv.name, version=mlp_mv.version, role="float model")
            mspec = FeatureSpec.from_dict(mlp_mv.preprocessing)
            mlp = opt.Candidate("mlp", mlp_mv.name, mlp_model, mlp_mv.flavor, mspec, mlp_mv.ref)
            quant = opt.Candidate("int8", opt.QUANTIZED_MODEL, quantize(mlp_model), "torch_int8",
                                  mspec)
            cands += [mlp, quant]
    if skipped:
        ctx.echo(f"int8: skipped: {skipped}")

    quality = bench.quality(cands)
    speeds = bench.speeds(cands, seconds=seconds)
    for cand in cands:
        cand.metrics = {f"ndcg@{opt.K}": quality[cand.label][f"ndcg@{opt.K}"],
                        f"recall@{opt.K}": quality[cand.label][f"recall@{opt.K}"],
                        "predictions_per_second": round(speeds[cand.label])}
        cand.metrics["size_bytes"] = len(get_flavor(cand.flavor).save(cand.model).data)
    rule = f"more than {limit:.0%} NDCG@{opt.K} lost"
    key = f"ndcg@{opt.K}"

    def verdict(cand: opt.Candidate, ref: opt.Candidate) -> dict[str, Any]:
        loss = opt.ndcg_loss(ref.metrics[key], cand.metrics[key])
        assert cand.scores is not None and ref.scores is not None
        out = {"reference": ref.ref, "ndcg_loss": round(loss, 4),
               "speedup": round(cand.metrics["predictions_per_second"]
                                / max(ref.metrics["predictions_per_second"], 1), 3),
               "rank_corr": round(opt.mean_user_spearman(cand.scores, ref.scores), 4),
               "promoted": loss <= limit}
        return out

    settings = {"max_ndcg_loss": limit, "speed_batch": opt.SPEED_BATCH,
                "speed_seconds": seconds, "holdout_users": len(bench.holdout.users),
                "candidates": bench.c, "towers": bench.tower_ref}
    teacher = {"model": teacher_mv.name, "version": teacher_mv.version}
    plan = [(student, full, teacher_mv, {**lineage, "teacher": teacher},
             {"distill": {"teacher": teacher_mv.ref, "objective": "binary:logistic on the "
                          "teacher's probabilities", **fit["params"],
                          "num_boost_round": fit["rounds"]}},
             f"{teacher_mv.ref} distilled into {fit['rounds']} trees of depth "
             f"{fit['params'].get('max_depth')} (soft labels on {lineage['table']}@"
             f"{lineage['version']}, train split)")]
    if mlp is not None and quant is not None:
        plan.append((quant, mlp, mlp_mv,
                     {**mlp_mv.training, "quantized_from": {"model": mlp_mv.name,
                                                            "version": mlp_mv.version}},
                     {"quantize": {"from": mlp_mv.ref, "weights": "int8 per output channel",
                                   "activations": "int8 dynamic (per batch)",
                                   "layers": "nn.Linear", "engine": engine}},
                     f"{mlp_mv.ref} with int8 linear layers (dynamic activation "
                     "quantization)"))
    registered = []
    for cand, ref, src_mv, training, extra_config, describe in plan:
        v = verdict(cand, ref)
        # Named so that `raylake models show` lists offline.* and reference.* first.
        metrics: dict[str, Any] = {
            "offline": {**cand.metrics, **v},
            "reference": {k: ref.metrics[k] for k in (key, f"recall@{opt.K}",
                                                      "predictions_per_second")},
            "run": {"run_id": run.run_id, **settings}}
        if cand is student:
            metrics["run"].update({f"distill_{k}": fit[k]
                                   for k in ("rows", "rounds", "fit_s", "teacher_mse")})
        mv = registry.register(
            cand.name, cand.model, flavor=cand.flavor, features=src_mv.features,
            training=training, config={**extra_config, "optimize": settings}, metrics=metrics,
            run_id=run.run_id, preprocessing=cand.spec.to_dict(), description=describe)
        if v["promoted"]:
            mv = registry.promote(mv.name, mv.version, "champion",
                                  reason=f"NDCG@{opt.K} within {limit:.0%} of {ref.ref} "
                                         f"(lost {v['ndcg_loss']:.2%})")
        cand.ref = mv.ref
        run.add_output(model=mv.name, version=mv.version, stage=mv.stage)
        registered.append((cand, ref, v, mv))

    table = [_row(full, "reference (the full ranker)")]
    for cand, ref, v, mv in registered:
        if cand is quant and mlp is not None:
            table.append(_row(mlp, "reference of int8"))
        what = (f"{'promoted' if v['promoted'] else 'NOT promoted'}: "
                f"{'lost' if v['ndcg_loss'] >= 0 else 'gained'} {abs(v['ndcg_loss']):.2%} NDCG "
                f"vs {ref.ref}" + ("" if v["promoted"] else f" ({rule})"))
        table.append(_row(cand, what, mv.ref))
    ctx.echo(f"model optimization on the holdout ({len(bench.holdout.users):,} users, "
             f"{bench.c} candidates each; predictions/s: {opt.SPEED_BATCH}-candidate batches, "
             "one thread):")
    for line in opt.table_lines(table):
        ctx.echo(line)
    run.metrics.update({"models": table, "settings": settings, "distill": fit,
                        "int8_skipped": skipped})
    parts = []
    for cand, _ref, v, mv in registered:
        parts.append(f"{mv.ref} ({mv.stage}) ndcg@20 {cand.metrics[key]:.4f} "
                     f"({'-' if v['ndcg_loss'] >= 0 else '+'}{abs(v['ndcg_loss']):.2%}"
                     f"{'' if v['promoted'] else ', ' + rule + ': not promoted'}), "
                     f"{cand.metrics['predictions_per_second']:,} pred/s")
    summary = (f"recsys-optimize: {full.ref} ndcg@20 {full.metrics[key]:.4f}, "
               f"{full.metrics['predictions_per_second']:,} pred/s; " + "; ".join(parts)
               + (f"; int8 skipped: {skipped}" if skipped else ""))
    return {"models": table, "registered": {c.label: mv for c, _r, _v, mv in registered},
            "verdicts": {c.label: v for c, _r, v, _m in registered}, "skipped": skipped,
            "summary": summary}


def _row(cand: Any, verdict: str, ref: str | None = None) -> dict[str, Any]:
    return {"model": ref or cand.ref, "ndcg@20": cand.metrics["ndcg@20"],
            "recall@20": cand.metrics["recall@20"],
            "predictions_per_second": cand.metrics["predictions_per_second"],
            "size_bytes": cand.metrics.get("size_bytes"), "verdict": verdict}
