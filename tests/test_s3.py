"""The lake on S3, against a local S3-compatible server (moto's, see tests/s3server.py):
ingest, reads at a version and a tag, run records, materialize, batch predictions, and
concurrent commits that all land exactly once (S3 has no atomic rename: a Delta commit
there is a put-if-absent of the next log file)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import textwrap

import pyarrow as pa
import pytest
from conftest import PYTHON, subprocess_env
from s3server import s3_server  # noqa: F401  (the fixture)

from raylake.config.loader import compose_config
from raylake.errors import LakeError
from raylake.lake import Lake, Storage
from raylake.lake.commit import write_table
from raylake.lake.storage import filesystem_for, s3_commit_defaults

QUIET = {"echo": lambda *_: None}

# -- storage settings (no server) ---------------------------------------------------


def test_s3_root_without_bucket_is_a_clear_error():
    for root in ("s3://", "s3:///lake", "s3a://"):
        with pytest.raises(LakeError, match=r"names no bucket.*s3a?://BUCKET/PATH"):
            Storage.from_config(root)


def test_s3_lake_commits_with_conditional_puts_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("AWS_CONDITIONAL_PUT", raising=False)
    assert Storage.from_config("s3://b/lake").delta_options() == {"conditional_put": "etag"}
    assert Storage.from_config("s3a://b/lake", {"AWS_REGION": "eu-west-1"}).delta_options() == {
        "conditional_put": "etag", "AWS_REGION": "eu-west-1"}
    # The user's choice wins, in options under either name, or in the environment.
    assert s3_commit_defaults({"aws_conditional_put": "etag"}) == {}
    assert Storage.from_config("s3://b/l", {"conditional_put": "x"}).delta_options() == {
        "conditional_put": "x"}
    monkeypatch.setenv("AWS_CONDITIONAL_PUT", "etag")
    assert Storage.from_config("s3://b/lake").delta_options() is None
    # Local lakes and their options are left alone; the recorded options never change.
    assert Storage.from_config("/tmp/lake").delta_options() is None
    assert Storage.from_config("s3://b/lake").options == {}


def test_pyarrow_reaches_the_endpoint_deltalake_reaches(monkeypatch):
    def kwargs(fs):  # S3FileSystem's settings, as it pickles them
        return fs.__reduce__()[1][0]

    # deltalake reads AWS_ENDPOINT_URL from the environment, pyarrow does not: mapped here.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    fs, path = filesystem_for("s3://b/lake", {})
    assert path == "b/lake"
    assert (kwargs(fs)["endpoint_override"], kwargs(fs)["scheme"]) == ("http://127.0.0.1:1", "http")
    # Options (any case) win over the environment; AWS_ALLOW_HTTP picks http for a bare host.
    fs, _ = filesystem_for("s3://b/lake", {"aws_endpoint_url": "127.0.0.1:2", "AWS_ALLOW_HTTP": "true",
                                           "aws_region": "eu-west-1", "AWS_ACCESS_KEY_ID": "k",
                                           "AWS_SECRET_ACCESS_KEY": "s"})
    got = kwargs(fs)
    assert (got["endpoint_override"], got["scheme"], got["region"]) == ("127.0.0.1:2", "http",
                                                                       "eu-west-1")
    assert (got["access_key"], got["secret_key"]) == ("k", "s")


# -- against the server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_lake(ray_session, s3_server):  # noqa: F811
    """airlines and weather ingested by the ingest job into s3://<bucket>/lake."""
    from raylake.ingest.jobs import ingest

    args = s3_server.overrides("lake")
    out = ingest(compose_config([*args, "ingest.tables=[airlines,weather]",
                                 "profile.on_ingest=false"]), **QUIET)
    lake = Lake(Storage.from_config(f"s3://{s3_server.bucket}/lake", s3_server.storage_options))
    return lake, args, out


@pytest.mark.slow
def test_server_refuses_a_second_create(s3_server):  # noqa: F811
    """The stand-in honours If-None-Match (what Delta's commits on S3 rely on)."""
    from botocore.exceptions import ClientError

    client = s3_server.client()
    client.put_object(Bucket=s3_server.bucket, Key="probe/once", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError, match="PreconditionFailed"):
        client.put_object(Bucket=s3_server.bucket, Key="probe/once", Body=b"2", IfNoneMatch="*")


@pytest.mark.slow
def test_ingest_versions_tags_and_runs_on_s3(s3_lake, s3_server):  # noqa: F811
    from raylake.lake.runs import get_run, list_runs
    from raylake.lake.tags import TagStore

    lake, args, out = s3_lake
    results = {r.table: r for r in out["tables"]}
    assert results["airlines"].rows_written == 16 and results["weather"].rows_written > 26_000
    # The tables are in the bucket, not on local disk.
    keys = s3_server.keys("lake/airlines/_delta_log/")
    assert "lake/airlines/_delta_log/00000000000000000000.json" in keys
    assert {"airlines", "weather"} <= set(lake.names())

    # A new version; the first still reads, by number and by tag.
    write_table(lake, "airlines", pa.table({"carrier": ["ZZ"], "name": ["Test Air"]}), job="test")
    assert lake.version("airlines") == 1 and lake.count("airlines") == 17
    TagStore(lake).set("airlines", "as-ingested", 0)
    assert lake.read("airlines", 0).num_rows == 16
    assert lake.read("airlines", "as-ingested").num_rows == 16
    assert "ZZ" not in lake.read("airlines", "as-ingested").column("carrier").to_pylist()

    # Run records: the ingest run is listed and shows its outputs.
    run_id = out["run_id"]
    assert run_id in [r["run_id"] for r in list_runs(lake, job="ingest")]
    run = get_run(lake, run_id)
    assert run["status"] == "succeeded"
    assert {o["table"]: o["version"] for o in run["outputs"]} == {"airlines": 0, "weather": 0}
    # Ingesting the same input again adds nothing.
    from raylake.ingest.jobs import ingest

    again = ingest(compose_config([*args, "ingest.tables=[weather]", "profile.on_ingest=false"]),
                   **QUIET)
    assert again["tables"][0].skipped and lake.version("weather") == 0


@pytest.mark.slow
def test_materialize_from_an_s3_lake(s3_lake, tmp_path):
    from raylake.config.loader import to_config
    from raylake.features import resolve
    from raylake.features.jobs import materialize as materialize_job
    from raylake.features.online import open_store
    from raylake.features.online.lookup import get_online_features

    lake, args, _ = s3_lake
    db = tmp_path / "online.db"  # the sqlite store is a local file whatever the lake
    base = [*args, f"online.path={db}", "materialize.views=[weather]"]
    out = materialize_job(compose_config([*base, "materialize.end=2013-07-01T00:00:00Z"],
                                         job="materialize"), **QUIET)
    assert out["views"]["weather"]["rows"] >= 3  # the three airports at least
    reg = resolve(to_config(compose_config(base, job="materialize")).features)
    got = get_online_features(open_store("sqlite", path=str(db)), reg, ["weather:temp"],
                              {"origin": ["JFK", "EWR"]},
                              now=dt.datetime(2013, 7, 1, tzinfo=dt.timezone.utc))
    temp = dict(zip(got["metadata"]["feature_names"], got["results"]))["temp"]
    assert temp["statuses"] == ["PRESENT", "PRESENT"]


@pytest.mark.slow
def test_batch_predictions_into_an_s3_lake(s3_lake):
    import xgboost
    from test_train import training_table

    from raylake.lake.runs import get_run
    from raylake.models.registry import ModelRegistry
    from raylake.models.spec import FeatureSpec
    from raylake.serve.jobs import batch_predict

    lake, args, _ = s3_lake
    table = training_table(600, seed=5)
    write_table(lake, "rows", table)
    spec = FeatureSpec(["wind", "noise"], ["carrier"], {"carrier": ["AA", "BB", "CC"]}, "delayed")
    d = xgboost.DMatrix(spec.matrix(table), label=spec.labels(table),
                        feature_types=spec.feature_types(), enable_categorical=True)
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 2}, d, 3)
    ModelRegistry(lake).register(  # its artifact goes to the bucket through pyarrow's S3
        "toy", booster, flavor="xgboost",
        features=[{"name": n, "type": "double"} for n in spec.names],
        training={"table": "rows", "version": 0}, config={}, metrics={}, run_id=None,
        preprocessing=spec.to_dict())
    out = batch_predict(compose_config([*args, "model=toy:latest", "table=rows",
                                        "batch_predict.batch_rows=200",
                                        "batch_predict.actors=1"], job="batch-predict"), **QUIET)
    assert out["rows"] == 600 and lake.count("predictions/toy") == 600
    got = lake.read("predictions/toy").to_pandas()
    assert got["prediction"].between(0, 1).all() and (got["model_version"] == 1).all()
    assert get_run(lake, out["run_id"])["status"] == "succeeded"


# Each writer: open the lake, then wait for the start file and append its rows at once.
WRITER = textwrap.dedent("""
    import json, os, sys, time
    import pyarrow as pa
    from raylake.lake import Lake, Storage
    from raylake.lake.commit import write_table
    root, options, start, ident, n = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], \\
        int(sys.argv[4]), int(sys.argv[5])
    lake = Lake(Storage.from_config(root, options))
    lake.version("events")  # imports and connections done before the start
    print("ready", flush=True)
    while not os.path.exists(start):
        time.sleep(0.002)
    rows = pa.table({"id": pa.array(range(ident * 1000, ident * 1000 + n), pa.int64()),
                     "writer": pa.array([ident] * n, pa.int64())})
    print(write_table(lake, "events", rows, job=f"writer-{ident}"), flush=True)
""")


@pytest.mark.slow
def test_concurrent_appends_both_land_once(s3_server, tmp_path):  # noqa: F811
    """Processes appending to one table at the same moment: each commit lands once (no
    commit overwrites another's log file), as consecutive new versions."""
    root = f"s3://{s3_server.bucket}/race"
    lake = Lake(Storage.from_config(root, s3_server.storage_options))
    write_table(lake, "events", pa.table({"id": pa.array([0], pa.int64()),
                                          "writer": pa.array([0], pa.int64())}))
    start, writers, n = tmp_path / "start", (1, 2, 3), 25
    procs = [subprocess.Popen([PYTHON, "-c", WRITER, root, json.dumps(s3_server.storage_options),
                               str(start), str(i), str(n)], env=subprocess_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in writers]
    for p in procs:  # all ready (or dead: its stderr says why)
        line = p.stdout.readline() if p.stdout else ""
        assert line.strip() == "ready", p.communicate()[1][-3000:]
    start.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-3000:] for o in outs]
    got = lake.read("events").to_pandas()
    assert len(got) == 1 + n * len(writers) and got["id"].is_unique
    assert got.groupby("writer").size().to_dict() == {0: 1, **{i: n for i in writers}}
    # Versions 1..3, one per writer (in whichever order they won).
    by_version = {h["version"]: h["job"] for h in lake.history("events")}
    assert sorted(by_version) == [0, 1, 2, 3]
    assert sorted(by_version[v] for v in (1, 2, 3)) == [f"writer-{i}" for i in writers]


@pytest.mark.slow
def test_a_commit_on_a_stale_snapshot_lands_after_the_newer_one(s3_server):  # noqa: F811
    """Deterministic form of the race: a writer still on version 0 commits after another
    wrote version 1. Its put of version 1 is refused (412) and it lands as version 2; with
    a blind overwrite, version 1's rows would be lost."""
    from deltalake import DeltaTable, write_deltalake

    lake = Lake(Storage.from_config(f"s3://{s3_server.bucket}/stale", s3_server.storage_options))
    rows = pa.table({"a": pa.array([1, 2], pa.int64())})
    write_table(lake, "t", rows)
    stale = DeltaTable(lake.uri("t"), storage_options=lake.storage.delta_options())
    write_table(lake, "t", rows)
    write_deltalake(stale, rows, mode="append")
    assert lake.version("t") == 2 and lake.count("t") == 6


@pytest.mark.slow
def test_branch_on_s3_copies_server_side_and_merges(s3_server, capsys):  # noqa: F811
    """Object stores have no links: a branch there is made of server-side copies
    (CopyObject). It reads like main at the same versions, a write on it leaves main
    unchanged, `lake du` counts each object where it lies, and the merge copies the
    branch's new files into main the same way."""
    from raylake.cli import main as cli
    from raylake.lake.branches import create_branch, list_branches
    from raylake.lake.diff import files_of
    from raylake.lake.merge import _unlink, merge_branch
    from raylake.lake.tags import TagStore
    from raylake.lake.usage import disk_usage

    prefix = "branched"
    lake = Lake(Storage.from_config(f"s3://{s3_server.bucket}/{prefix}",
                                    s3_server.storage_options))
    events = [pa.table({"id": pa.array(range(i * 10, i * 10 + 10), pa.int64()),
                        "day": pa.array([i] * 10, pa.int64())}) for i in range(3)]
    for i, part in enumerate(events):
        write_table(lake, "events", part, app_id=f"day-{i}")
    write_table(lake, "airlines", pa.table({"carrier": ["AA", "UA"], "name": ["A", "U"]}))
    TagStore(lake).set("events", "two-days", 1)
    before = {t: (lake.version(t), lake.read(t).sort_by("id" if t == "events" else "carrier"))
              for t in ("events", "airlines")}
    objects = len(s3_server.keys(f"{prefix}/"))

    made = create_branch(lake, "exp1")
    assert made.info.storage == "copies" and made.files_linked == 0
    assert made.files_copied >= objects - 1 and made.bytes_copied > 0
    assert made.info.tables["events"] == 2 and made.info.tables["airlines"] == 0
    assert [(b.name, b.storage) for b in list_branches(lake)] == [("exp1", "copies")]
    assert f"{prefix}/_branches/exp1/events/_delta_log/00000000000000000002.json" in \
        s3_server.keys(f"{prefix}/_branches/exp1/")

    # The branch reads the same rows at the same versions, old versions and tags too.
    branch = lake.on_branch("exp1")
    for t, (version, rows) in before.items():
        assert branch.version(t) == version
        assert branch.read(t).sort_by(rows.column_names[0]).equals(rows)
    assert branch.read("events", 0).num_rows == 10
    assert branch.read("events", "two-days").num_rows == 20

    # An append on the branch leaves main as it was.
    extra = pa.table({"id": pa.array([100, 101], pa.int64()), "day": pa.array([9, 9], pa.int64())})
    write_table(branch, "events", extra, app_id="day-9")
    assert branch.version("events") == 3 and branch.count("events") == 32
    assert lake.version("events") == 2 and lake.count("events") == 30

    # du: no links, so every object counts where it lies (the branch's bytes are new).
    usage = disk_usage(lake)
    rows = {(r["branch"], r["table"]): r for r in usage.rows}
    assert rows[("exp1", "events")]["new_bytes"] == rows[("exp1", "events")]["bytes"] > 0
    assert rows[("main", "events")]["new_bytes"] == rows[("main", "events")]["bytes"] > 0
    assert usage.unique_bytes == usage.apparent_bytes
    root = f"s3://{s3_server.bucket}/{prefix}"
    opts = [f"+lake.storage_options.{k}={v}" for k, v in s3_server.storage_options.items()]
    capsys.readouterr()
    assert cli(["lake", "du", f"lake.root={root}", *opts]) == 0
    out = capsys.readouterr().out
    assert "exp1" in out and "events" in out and "total" in out
    assert cli(["branch", "list", f"lake.root={root}", *opts]) == 0
    assert "copies" in capsys.readouterr().out

    # Merge: the branch's new file is copied (server-side) into main, in one commit.
    result = merge_branch(lake, "exp1")
    assert result.merged == ["events"]
    assert lake.version("events") == 3 and lake.count("events") == 32
    assert sorted(lake.read("events").column("id").to_pylist())[-2:] == [100, 101]
    assert lake.read("airlines").equals(before["airlines"][1]) and lake.version("airlines") == 0
    assert merge_branch(lake, "exp1").merged == []  # merged once only
    # Main moves on between planning and committing: the copied object is removed, the
    # table planned again and merged on the new snapshot.
    write_table(branch, "events", pa.table({"id": pa.array([102], pa.int64()),
                                            "day": pa.array([10], pa.int64())}))
    moved: list[str] = []

    def move_main(table: str) -> None:
        if not moved:
            moved.append(table)
            write_table(lake, "events", pa.table({"id": pa.array([200], pa.int64()),
                                                  "day": pa.array([11], pa.int64())}))

    assert merge_branch(lake, "exp1", before_commit=move_main).merged == ["events"]
    assert moved == ["events"] and lake.version("events") == 5 and lake.count("events") == 34
    data_keys = [k for k in s3_server.keys(f"{prefix}/events/") if k.endswith(".parquet")]
    assert len(data_keys) == len(files_of(lake.table("events"))) == 6
    # What a failed commit copied is deleted from the bucket (not looked for on local disk).
    fs, base = lake.storage.filesystem()
    fs.copy_file(f"{base}/{data_keys[0].split('/', 1)[1]}", f"{base}/events/stray.parquet")
    _unlink(lake, [f"{base}/events/stray.parquet"])
    assert f"{prefix}/events/stray.parquet" not in s3_server.keys(f"{prefix}/events/")
    # The merged file is main's own object now: deleting the branch leaves it readable.
    assert cli(["branch", "delete", "exp1", f"lake.root={root}", *opts]) == 0
    # (pyarrow leaves an empty ``_branches/`` marker object behind: no branch, no bytes)
    assert [k for k in s3_server.keys(f"{prefix}/_branches/") if not k.endswith("/")] == []
    assert list_branches(lake) == []
    assert sorted(lake.read("events").column("id").to_pylist()) == [*range(30), 100, 101, 102,
                                                                     200]
