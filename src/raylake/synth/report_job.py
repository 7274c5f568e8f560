"""``raylake synth report``: a synthesizer's samples judged against the real rows.

With ``model=NAME[:V]`` the real side is found again from the model's lineage: its
training table version, columns, sample and holdout (``synth.data`` decides both per
row, so the rows the fit used and the ones it never saw come back exactly). The
synthetic side is ``synth.report.synthetic_table``, else the latest ``synth sample`` of
the model (``synthetic/<name>``), else as many rows as the real side sampled here with
``synth.seed``. With ``table=REAL`` and ``synth.report.synthetic_table=SYN`` (no model)
any two tables are compared; the holdout is then a ``synth.report.holdout`` share of
REAL's rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from raylake.errors import ConfigError, SynthError
from raylake.runner import JobContext
from raylake.synth import data as sdata


def run(ctx: JobContext) -> dict[str, Any]:
    """The report's JSON and HTML under ``<output_dir or lake/_reports>/synth/<name>``."""
    from raylake.synth.report import report, write_report

    conf, lake, run_record = ctx.conf, ctx.lake, ctx.record
    s = conf.synth
    rcfg = s.report
    warnings: list[str] = []
    if conf.model:
        from raylake.synth.sample import load

        loaded = load(lake, str(conf.model))
        mv = loaded.version
        fitted = dict(mv.config.get("synth") or {})
        table, version = mv.training["table"], mv.training["version"]
        columns = [f["name"] for f in mv.features]
        real = sdata.read_real(lake, table, version, columns, fitted.get("max_rows"),
                               int(fitted.get("seed", 0)),
                               float((fitted.get("report") or {}).get("holdout", rcfg.holdout)))
        discrete = fitted.get("discrete")
        name = mv.ref
        if mv.metrics.get("warning"):
            warnings.append(str(mv.metrics["warning"]))
        run_record.add_input(model=mv.ref, role="synthesizer")
    elif conf.table and rcfg.synthetic_table:
        loaded = None
        table, version = conf.table, conf.version
        real = sdata.read_real(lake, table, version, list(s.columns), s.max_rows, s.seed,
                               rcfg.holdout)
        discrete, name = s.discrete, f"{rcfg.synthetic_table} vs {table}"
    else:
        raise ConfigError("synth report needs a synthesizer (model=NAME:VERSION) or two tables "
                          "(table=REAL synth.report.synthetic_table=SYNTHETIC).")
    run_record.add_input(table=table, version=real.version, rows=real.rows + len(real.holdout),
                         role="real")
    syn, where = _synthetic(ctx, loaded, real, rcfg.synthetic_table)
    missing = [c for c in real.frame.columns if c not in syn.columns]
    if missing:
        raise SynthError(f"The synthetic rows ({where}) lack the real columns {missing}: "
                         "compare tables with the same columns.")
    syn = syn[list(real.frame.columns)]
    members = _cap(real.frame, rcfg.max_rows, s.seed)
    syn = _cap(syn, rcfg.max_rows, s.seed)
    holdout = _cap(real.holdout, rcfg.max_rows, s.seed) if len(real.holdout) else None
    if holdout is None:
        warnings.append("no holdout rows: privacy and utility not measured "
                        "(synth.report.holdout is 0)")
    if rcfg.target and rcfg.target not in members.columns:
        raise SynthError(f"synth.report.target={rcfg.target!r} is not a column of the real "
                         f"rows ({', '.join(members.columns)}).")
    rep = report(members, syn, target=rcfg.target, holdout=holdout, discrete=discrete,
                 name=name, warnings=warnings, seed=s.seed,
                 extra={"real": f"{table}@{real.version}", "synthetic": where})
    base = Path(conf.output_dir) if conf.output_dir else Path(lake.root) / "_reports"
    folder = base / "synth" / name.replace(":", "_").replace("/", "_").replace(" ", "_")
    js, page = write_report(rep, folder)
    q = rep["quality"]
    metrics: dict[str, Any] = {"quality": q.get("score"), "column_shapes": q.get("column_shapes"),
                               "column_pair_trends": q.get("column_pair_trends")}
    if rep.get("utility"):
        metrics["tstr_ratio"] = rep["utility"].get("ratio")
    if rep.get("privacy"):
        p = rep["privacy"]
        metrics.update({k: p.get(k) for k in ("exact_copy_share", "dcr_ratio",
                                               "membership_auc") if k in p})
    run_record.metrics.update({k: v for k, v in metrics.items() if v is not None})
    run_record.metrics["report"] = str(page)
    lines = [f"synth report {name}: quality {_f(q.get('score'))} (shapes "
             f"{_f(q.get('column_shapes'))}, pair trends {_f(q.get('column_pair_trends'))})"]
    if rep.get("utility"):
        u = rep["utility"]
        lines.append(f"  utility: AUC trained on synthetic {_f(u.get('auc_synthetic'))}, on real "
                     f"{_f(u.get('auc_real'))} (ratio {_f(u.get('ratio'))})")
    if rep.get("privacy"):
        p = rep["privacy"]
        lines.append(f"  privacy: exact copies {_f(p.get('exact_copy_share'), '.2%')} (holdout "
                     f"{_f(p.get('holdout_exact_copy_share'), '.2%')}), DCR ratio "
                     f"{_f(p.get('dcr_ratio'))}, membership AUC {_f(p.get('membership_auc'))}")
    lines += [f"  warning: {w}" for w in rep.get("warnings") or []]
    lines.append(f"  {page} (and {js.name})")
    return {"report": rep, "html": str(page), "json": str(js), "summary": lines}


def _f(v: Any, fmt: str = ".3f") -> str:
    return "n/a" if v is None else format(v, fmt)


def _cap(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    if len(frame) <= rows:
        return frame
    return frame.sample(n=rows, random_state=seed).reset_index(drop=True)


def _synthetic(ctx: JobContext, loaded: Any, real: sdata.RealRows,
               table: str | None) -> tuple[pd.DataFrame, str]:
    """The synthetic rows and where they came from."""
    lake = ctx.lake
    if table is None and loaded is not None:
        table = _latest_sample(lake, loaded.version.ref, f"synthetic/{loaded.version.name}")
    if table is not None:
        version = lake.version(table)
        ctx.record.add_input(table=table, version=version, role="synthetic")
        return lake.read(table, version).to_pandas(), f"{table}@{version}"
    from raylake.synth.sample import sample_rows

    n = min(len(real.frame), ctx.conf.synth.report.max_rows)
    rows = sample_rows(loaded.data, loaded.version.flavor_info, n, ctx.conf.synth.seed, {},
                       loaded.version.training.get("arrow_schema"))
    return rows.to_pandas(), f"{n} rows sampled from {loaded.version.ref} (seed {ctx.conf.synth.seed})"



def _latest_sample(lake: Any, ref: str, table: str) -> str | None:
    """``table`` when its latest version is an unconditioned sample of model ``ref`` (by
    the run record of the write), else None: a sample of another version of the model, or
    one kept to a condition, says nothing of this model's rows."""
    from raylake.synth.sample import latest_output

    out = latest_output(lake, table)
    return table if out and out.get("model") == ref and not out.get("conditions") else None
