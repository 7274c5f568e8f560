"""OpenLineage RunEvents from the lake's run records (``_runs``), for Marquez or any
OpenLineage consumer: ``raylake lineage export --format openlineage``.

Each run gives a START event at its start time and, once it ended, a COMPLETE (succeeded
or skipped) or FAIL event at its end; a run still recorded as running gives START only.
The job is raylake's job name in ``governance.openlineage.namespace``; the run id is a
UUID derived from raylake's run id (uuid5: every export of a run gives the same id, and
the ``tags`` run facet keeps raylake's own id). The end event carries the datasets the
record names (``openlineage_datasets``), column lineage where raylake knows it
(``column_lineage``) and the constraint results of the run. No config is emitted: the
record's config is read only for feature definitions and constraint columns.

Every event is checked against the vendored schema before it leaves
(``openlineage_schema.validate_event``), then written as NDJSON to a file or POSTed one by
one to ``<url>/api/v1/lineage``, Marquez's endpoint (``openlineage_transport``).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import uuid
from collections.abc import Callable
from typing import Any

from raylake import __version__
from raylake.errors import ConfigError
from raylake.governance import column_lineage
from raylake.governance.openlineage_datasets import (
    DATASET,
    INPUT,
    OUTPUT,
    Datasets,
    as_version,
)
from raylake.governance.openlineage_schema import (
    PRODUCER,
    RUN_EVENT_URL,
    facet,
    validate_event,
)
from raylake.governance.openlineage_transport import endpoint, post_events, write_ndjson
from raylake.lake.runs import list_runs
from raylake.lake.tables import Lake

__all__ = ["endpoint", "events_of_run", "export", "lineage_events", "parse_since",
           "post_events", "run_uuid", "validate_event", "write_ndjson"]

# uuid5 namespace of raylake run ids: a constant, so a run maps to one UUID everywhere.
RUN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:raylake:run")
_TERMINAL = {"succeeded": "COMPLETE", "skipped": "COMPLETE", "failed": "FAIL"}


def run_uuid(run_id: str) -> str:
    """The OpenLineage run id (a UUID) of raylake run ``run_id``: the same on every export."""
    return str(uuid.uuid5(RUN_NAMESPACE, run_id))


def parse_since(text: str | None) -> dt.datetime | None:
    """An ISO 8601 date or time (UTC when naive); ConfigError naming the value otherwise."""
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {text!r} is not an ISO 8601 time; write e.g. 2026-05-01 "
                          "or 2026-05-01T12:00:00Z.") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def lineage_events(lake: Lake, *, namespace: str = "raylake",
                   since: dt.datetime | None = None) -> list[dict[str, Any]]:
    """The events of every run recorded in ``lake`` (started at or after ``since``), in
    time order, a run's START before its end."""
    runs = list_runs(lake)
    parents = _parents(runs)
    chosen = [r for r in runs if since is None or r["started_at"] >= since]
    datasets = Datasets(lake)
    timed = [te for r in chosen
             for te in _events(r, namespace, datasets, parents.get(r["run_id"]))]
    timed.sort(key=lambda te: (te[0], te[1], te[2]["run"]["runId"]))
    return [e for _, _, e in timed]


def events_of_run(lake: Lake, record: dict[str, Any], *,
                  namespace: str = "raylake") -> list[dict[str, Any]]:
    """The events of one run record (as ``list_runs`` gives it)."""
    return [e for _, _, e in _events(record, namespace, Datasets(lake), None)]


def export(lake: Lake, *, namespace: str, since: dt.datetime | None = None,
           output: str | None = None, url: str | None = None, timeout_s: float = 10.0,
           echo: Callable[[str], Any] = print) -> dict[str, Any]:
    """Build, validate and send the lake's events: POST to ``url``, else NDJSON to
    ``output`` (``-`` or None: ``echo`` each line). The count of events and runs."""
    events = lineage_events(lake, namespace=namespace, since=since)
    for event in events:
        validate_event(event)
    if url:
        post_events(events, url, timeout_s=timeout_s)
        where = endpoint(url)
    elif output and output != "-":
        write_ndjson(events, output)
        where = output
    else:
        for event in events:
            echo(json.dumps(event, separators=(",", ":")))
        where = "standard output"
    runs = len({e["run"]["runId"] for e in events})
    return {"events": len(events), "runs": runs, "to": where}


# -- one run's events -------------------------------------------------------------------


def _events(record: dict[str, Any], namespace: str, datasets: Datasets,
            parent: dict[str, Any] | None) -> list[tuple[dt.datetime, int, dict[str, Any]]]:
    job = {"namespace": namespace, "name": record["job"], "facets": _job_facets(record["job"])}
    run_facets = _run_facets(record, namespace, parent, datasets.lake.branch_name)
    start = _event("START", record["started_at"], record, job, run_facets)
    out = [(record["started_at"], 0, start)]
    kind = _TERMINAL.get(record["status"])
    if kind is not None:
        ended = record["ended_at"] or record["started_at"]
        end_facets = dict(run_facets)
        tags = end_facets["tags"]  # the end event says how it ended (skipped: nothing to do)
        end_facets["tags"] = {**tags, "tags": [*tags["tags"], {
            "key": "raylake.status", "value": record["status"], "source": "raylake"}]}
        if kind == "FAIL":
            end_facets["errorMessage"] = facet(
                "run", "errorMessage", message=record.get("error") or "failed (no message)",
                programmingLanguage="PYTHON")
        event = _event(kind, ended, record, job, end_facets)
        event["inputs"] = _inputs(record, datasets)
        event["outputs"] = _outputs(record, datasets)
        out.append((ended, 1, event))
    return out


def _event(kind: str, when: dt.datetime, record: dict[str, Any], job: dict[str, Any],
           run_facets: dict[str, Any]) -> dict[str, Any]:
    return {"eventType": kind, "eventTime": _iso(when), "producer": PRODUCER,
            "schemaURL": RUN_EVENT_URL,
            "run": {"runId": run_uuid(record["run_id"]), "facets": run_facets},
            "job": job}


def _job_facets(name: str) -> dict[str, Any]:
    facets = {"jobType": facet("job", "jobType", processingType="BATCH",
                               integration="RAYLAKE", jobType="JOB")}
    if _helps().get(name):
        facets["documentation"] = facet("job", "documentation", description=_helps()[name],
                                        contentType="text/plain")
    return facets


@functools.cache
def _helps() -> dict[str, str]:
    """Each job's help line (read from the jobs modules' source, importing none)."""
    from raylake.runner.registry import declared

    return {name: job.help for name, job in declared().items()}


def _run_facets(record: dict[str, Any], namespace: str, parent: dict[str, Any] | None,
                branch: str) -> dict[str, Any]:
    nominal = {"nominalStartTime": _iso(record["started_at"])}
    if record.get("ended_at"):
        nominal["nominalEndTime"] = _iso(record["ended_at"])
    tags = [{"key": "raylake.run_id", "value": record["run_id"], "source": "raylake"},
            {"key": "raylake.branch", "value": branch, "source": "raylake"}]
    if record.get("code_version"):
        tags.append({"key": "raylake.code_version", "value": record["code_version"],
                     "source": "raylake"})
    facets = {
        "nominalTime": facet("run", "nominalTime", **nominal),
        "processing_engine": facet("run", "processing_engine", name="raylake",
                                   version=__version__, openlineageAdapterVersion=__version__),
        "tags": facet("run", "tags", tags=tags),
    }
    if parent is not None:
        facets["parent"] = facet("run", "parent",
                                 run={"runId": run_uuid(parent["run_id"])},
                                 job={"namespace": namespace, "name": parent["job"]})
    return facets


def _parents(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Child run id -> the run that started it, where a record names its children: a ct
    run records the training-set and train runs it ran (``metrics.training_set.run_id``,
    ``metrics.train_run``)."""
    out = {}
    for r in runs:
        m = r.get("metrics") or {}
        built = m.get("training_set")
        children = [built.get("run_id") if isinstance(built, dict) else None, m.get("train_run")]
        for child in children:
            if isinstance(child, str) and child != r["run_id"]:
                out[child] = r
    return out


# -- datasets of a run ---------------------------------------------------------------


def _inputs(record: dict[str, Any], datasets: Datasets) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    metrics = record.get("metrics") or {}
    for entry in record.get("inputs") or []:
        if entry.get("via"):
            continue  # read through a training set: that table is the input
        if entry.get("kind") == "files":
            of_table = metrics.get(entry.get("table"))  # ingest: results per table
            checks = of_table.get("constraints") if isinstance(of_table, dict) else None
            for path in entry.get("files") or []:
                ds = datasets.file(str(path))
                if checks:  # the rows read from these files were checked
                    ds["inputFacets"] = {"dataQualityAssertions": _assertions(
                        record, entry.get("table"), checks)}
                out.append(ds)
        elif entry.get("model"):
            out.append(datasets.model(entry["model"], entry.get("version")))
        elif entry.get("table"):
            table, version = entry["table"], entry.get("version")
            ds = datasets.table(table, version, branch=entry.get("branch"))
            input_facets = {}
            if (m := datasets.metrics(INPUT, table, version)) is not None:
                input_facets["dataQualityMetrics"] = m
            if record["job"] == "validate" and metrics.get("constraints"):
                input_facets["dataQualityAssertions"] = _assertions(
                    record, table, metrics["constraints"])
            if input_facets:
                ds["inputFacets"] = input_facets
            out.append(ds)
    return _unique(out)


def _outputs(record: dict[str, Any], datasets: Datasets) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    config = record.get("config") or {}
    ident = datasets.table_id
    for entry in record.get("outputs") or []:
        if entry.get("kind") == "files":
            out += [datasets.file(str(p)) for p in entry.get("files") or []]
        elif entry.get("report_json") or entry.get("report_html"):
            out += [datasets.file(str(entry[k])) for k in ("report_json", "report_html")
                    if entry.get(k)]
        elif entry.get("online_store"):
            for view, res in (entry.get("views") or {}).items():
                ds = datasets.online_view(entry["online_store"], config.get("online") or {}, view)
                if isinstance(res, dict) and isinstance(res.get("rows"), int):
                    ds["outputFacets"] = {"outputStatistics": facet(
                        OUTPUT, "outputStatistics", rowCount=res["rows"])}
                if isinstance(res, dict) and res.get("table") and (
                        lineage := column_lineage.online_view(record, view, res["table"], ident)):
                    ds["facets"]["columnLineage"] = facet(DATASET, "columnLineage", **lineage)
                out.append(ds)
        elif entry.get("model"):
            out.append(datasets.model(entry["model"], entry.get("version")))
        elif entry.get("table"):
            out.append(_table_output(record, entry, datasets))
    return _unique(out)


def _table_output(record: dict[str, Any], entry: dict[str, Any],
                  datasets: Datasets) -> dict[str, Any]:
    table, version = entry["table"], entry.get("version")
    # profile's _profiles entry carries the profiled table's version, not _profiles' own.
    versioned = not entry.get("table_profiled")
    ds = datasets.table(table, version, versioned=versioned)
    if isinstance(entry.get("rows"), int) and not entry.get("skipped"):
        ds["outputFacets"] = {"outputStatistics": facet(OUTPUT, "outputStatistics",
                                                        rowCount=entry["rows"])}
    if versioned and (m := datasets.metrics(DATASET, table, version)) is not None:
        ds["facets"]["dataQualityMetrics"] = m  # e.g. ingest's profile of what it wrote
    v = as_version(version) if versioned else None
    schema = datasets.schema(table, v) if v is not None else None
    columns = schema.names if schema is not None else []
    lineage = None
    if record["job"] == "training-set":
        lineage = column_lineage.training_set(record, columns, datasets.table_id)
    elif record["job"] == "aggregate":
        lineage = column_lineage.aggregation(record, table, columns, datasets.table_id)
    if lineage:
        ds["facets"]["columnLineage"] = facet(DATASET, "columnLineage", **lineage)
    return ds


def _assertions(record: dict[str, Any], table: str | None,
                checks: list[dict[str, Any]]) -> dict[str, Any]:
    """Constraint results as DataQualityAssertions: the check, passed or not, its policy
    as the severity; never the sample rows a result keeps (they are data)."""
    declared = (((record.get("config") or {}).get("quality") or {}).get("tables") or {}).get(
        table or "") or {}
    columns = {c.get("name"): c.get("column") for c in declared.get("constraints") or []}
    out = []
    for c in checks:
        a: dict[str, Any] = {"assertion": str(c.get("check")), "success": bool(c.get("passed")),
                             "name": str(c.get("name")),
                             "severity": "error" if c.get("policy") == "fail" else
                             str(c.get("policy"))}
        if columns.get(c.get("name")):
            a["column"] = columns[c.get("name")]
        if c.get("message"):
            a["description"] = str(c["message"])
        if isinstance(c.get("observed"), (int, float)) and not isinstance(c["observed"], bool):
            a["actual"] = str(c["observed"])
        if c.get("violations") is not None:
            a["params"] = {"violations": c["violations"], "policy": c.get("policy")}
        out.append(a)
    return facet(INPUT, "dataQualityAssertions", assertions=out)


def _unique(datasets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each (namespace, name, version) once: the first entry wins."""
    seen, out = set(), []
    for ds in datasets:
        v = ds["facets"].get("version", {}).get("datasetVersion")
        key = (ds["namespace"], ds["name"], v)
        if key not in seen:
            seen.add(key)
            out.append(ds)
    return out


def _iso(when: dt.datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
