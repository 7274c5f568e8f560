"""The audit of reads: a job run that read a table with columns classified pii or
restricted leaves one `_audit` row (run, job, table, version, columns, purpose from
config); unclassified reads and lakes without a classification leave none, and a
failure of the audit never fails the run."""

from __future__ import annotations

import logging

import pyarrow as pa
import pytest

from raylake.config.loader import compose_config
from raylake.lake import Lake, Storage
from raylake.lake.audit import AUDIT_TABLE, read_audit
from raylake.lake.classification import save_classification
from raylake.lake.commit import write_table
from raylake.pii.types import ColumnClass
from raylake.runner.spec import JobSpec, run_spec

PURPOSE = "fraud model training (contract 2024-17)"


def customers() -> pa.Table:
    n = 40
    return pa.table({
        "id": pa.array(range(n), pa.int64()),
        "email": [f"c{i}@example.com" for i in range(n)],
        "card": [f"{4000000000000000 + i}" for i in range(n)],
        "amount": [i * 2.5 for i in range(n)],
    })


def classified_lake(root: str) -> Lake:
    lake = Lake(Storage.from_config(root))
    write_table(lake, "customers", customers())
    save_classification(lake, "customers", [
        ColumnClass("id", "internal"), ColumnClass("email", "pii", {"EMAIL_ADDRESS": 1.0}),
        ColumnClass("card", "restricted", {"CREDIT_CARD": 1.0}), ColumnClass("amount", "internal"),
    ], run_id="ingest-1", table_version=0)
    write_table(lake, "plain", pa.table({"x": [1, 2, 3]}))
    save_classification(lake, "plain", [ColumnClass("x", "internal")], run_id="ingest-2",
                        table_version=0)
    return lake


def test_a_job_reading_a_classified_table_audits_the_read(ray_session, tmp_path):
    from raylake.quality.jobs import profile

    root = str(tmp_path / "lake")
    lake = classified_lake(root)
    out = profile(compose_config([f"lake.root={root}", "table=customers",
                                  f"governance.purpose='{PURPOSE}'"], job="profile"),
                  echo=lambda *_: None)
    assert out["status"] == "succeeded"
    rows = read_audit(lake, "read")
    assert len(rows) == 1
    row = rows[0]
    assert row["run_id"] == out["run_id"] and row["job"] == "profile"
    assert (row["table"], row["version"]) == ("customers", out["version"])
    assert row["columns"] == ["card", "email"] and row["purpose"] == PURPOSE
    assert '"card": "restricted"' in row["detail"] and "c0@example.com" not in str(row)
    # A table with no pii or restricted column: its read is not audited.
    plain = profile(compose_config([f"lake.root={root}", "table=plain"], job="profile"),
                    echo=lambda *_: None)
    assert plain["status"] == "succeeded" and len(read_audit(lake, "read")) == 1


def reader(table: str, fail: bool = False) -> JobSpec:
    """A job (not registered) that reads ``table``, records it, and may then fail."""

    def read(ctx):
        data = ctx.lake.read(table)
        ctx.record.add_input(table=table, version=ctx.lake.version(table), role="rows")
        ctx.record.add_input(kind="files", table="customers", files=["x.csv"])  # not a read
        ctx.record.add_input(model="toy", version=1)  # not a table
        if fail:
            raise RuntimeError("the model did not converge")
        return {"rows": data.num_rows}

    return JobSpec(f"read-{table}", "reads a table", read, ray=False)


def test_a_failed_run_audits_its_reads_too(tmp_path):
    root = str(tmp_path / "lake")
    lake = classified_lake(root)
    with pytest.raises(Exception, match="did not converge"):
        run_spec(reader("customers", fail=True), compose_config([f"lake.root={root}"]),
                 echo=lambda *_: None)
    (row,) = read_audit(lake, "read")
    assert row["job"] == "read-customers" and row["purpose"] == ""
    assert '"status": "failed"' in row["detail"] and '"role": "rows"' in row["detail"]


def test_no_classification_no_audit(tmp_path):
    root = str(tmp_path / "lake")
    lake = Lake(Storage.from_config(root))
    write_table(lake, "customers", customers())
    out = run_spec(reader("customers"), compose_config([f"lake.root={root}"]),
                   echo=lambda *_: None)
    assert out["status"] == "succeeded" and out["rows"] == 40
    assert not lake.exists(AUDIT_TABLE, system=True)


def test_an_audit_that_cannot_be_written_never_fails_the_run(tmp_path, monkeypatch, caplog):
    import raylake.runner.audit as audit

    root = str(tmp_path / "lake")
    lake = classified_lake(root)

    def broken(*_args, **_kw):
        raise OSError("disk quota exceeded")

    monkeypatch.setattr(audit, "append_audit", broken)
    with caplog.at_level(logging.WARNING, logger="raylake.runner"):
        out = run_spec(reader("customers"), compose_config([f"lake.root={root}"]),
                       echo=lambda *_: None)
    assert out["status"] == "succeeded"
    assert "could not write the audit" in caplog.text and "disk quota exceeded" in caplog.text
    assert read_audit(lake, "read") == []
