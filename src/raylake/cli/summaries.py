"""Readable summaries of run records and model versions for ``raylake runs`` and
``raylake models``: what a person asks first (inputs, outputs, key metrics, numbers to 4
significant digits); the whole record stays behind ``--full`` and ``--json``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

# Metrics a summary names first when a record has them (train, tune, evaluation).
KEY_METRICS = ("auc", "log_loss", "accuracy", "f1", "rmse", "mae", "r2", "rows")
SHOWN_METRICS = 12


def num(value: Any) -> str:
    """A value for a summary line: floats to 4 significant digits, the rest with ``str``."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        short = f"{value:.4g}"
        if "e+" in short and abs(value) < 1e15:  # 12921.3 -> 12,920, not 1.292e+04
            return f"{round(float(short)):,}"
        return short
    return str(value)


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metrics as dotted keys with scalar values (lists and empty dicts left out)."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, (int, float, str, bool)) and not isinstance(value, list):
            out[name] = value
    return out


def key_metrics(metrics: dict[str, Any] | None, limit: int = SHOWN_METRICS) -> list[tuple[str, Any]]:
    """Up to ``limit`` numeric metrics, those of :data:`KEY_METRICS` (test first, then
    valid) ahead of the rest; timings and bookkeeping last."""
    flat = {k: v for k, v in flatten(metrics or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def rank(key: str) -> tuple[int, int, str]:
        leaf = key.rsplit(".", 1)[-1]
        side = 0 if key.startswith("test.") else 1 if key.startswith("valid.") else 2
        known = KEY_METRICS.index(leaf) if leaf in KEY_METRICS else len(KEY_METRICS)
        late = bool({"timings", "reported", "split", "seconds"} & set(key.split(".")[:-1])) \
            or leaf.endswith("_s")
        return (int(late) * 10 + (0 if known < len(KEY_METRICS) else 1), side * 100 + known, key)

    return [(k, flat[k]) for k in sorted(flat, key=rank)[:limit]]


def metrics_inline(metrics: dict[str, Any] | None, limit: int = 4) -> str:
    """A few key metrics on one line (``models list``): the test split's when there is one
    (named ``test:``), else the first of the record: ``test: auc=0.7031 log_loss=0.4803``."""
    m, prefix = metrics or {}, ""
    if isinstance(m.get("test"), dict):
        m, prefix = m["test"], "test: "
    return prefix + " ".join(f"{k}={num(v)}" for k, v in key_metrics(m, limit))


def ref_text(item: dict[str, Any]) -> str:
    """An input or output of a run record in a few words: ``flights@0``, ``model
    delay_model v1 (candidate)``, ``online store sqlite: 4 views``, a report's path."""
    if item.get("table") and item.get("version") is not None:
        text = f"{item['table']}@{item['version']}"
        if item.get("table_profiled"):
            text += f" (profile of {item['table_profiled']})"
        return text
    if item.get("model"):
        stage = f" ({item['stage']})" if item.get("stage") else ""
        return f"model {item['model']} v{item.get('version')}{stage}"
    if item.get("online_store"):
        views = item.get("views") or {}
        return f"online store {item['online_store']}: {len(views)} views" + (
            f" ({', '.join(views)})" if views else "")
    if item.get("report_html") or item.get("report_json"):
        return f"report {item.get('report_html') or item.get('report_json')}"
    if item.get("kind") == "files" and item.get("table"):
        files = item.get("files") or []
        return f"{len(files)} source file(s) of {item['table']}" + (
            f": {files[0]}" if len(files) == 1 else "")
    if item.get("table"):
        return str(item["table"])
    scalars = {k: v for k, v in item.items() if isinstance(v, (str, int, float, bool))}
    return ", ".join(f"{k}={num(v)}" for k, v in scalars.items()) or json.dumps(item, default=str)


def _details(item: dict[str, Any], shown: Iterable[str]) -> str:
    extra = {k: v for k, v in item.items() if k not in shown and isinstance(v, (str, int, float))
             and not isinstance(v, bool) and v != ""}
    return "  ".join(f"{k}={num(v)}" for k, v in extra.items())


_REF_KEYS = ("table", "version", "model", "stage", "online_store", "views", "report_html",
             "report_json", "kind", "files", "table_profiled", "fingerprint")


def outputs_text(outputs: list[dict[str, Any]] | None) -> str:
    """A run's outputs in one cell of ``runs list``."""
    return ", ".join(ref_text(o) for o in outputs or [])


def run_summary(record: dict[str, Any]) -> list[str]:
    """``runs show``: status, inputs, outputs, key metrics, error; then where the rest is."""
    when = str(record.get("started_at") or "")[:19]
    dur = record.get("duration_s")
    lines = [f"run {record['run_id']} ({record.get('job')}): {record.get('status')}"
             + (f" in {num(float(dur))}s" if isinstance(dur, (int, float)) else "")
             + (f", started {when}" if when else "")
             + (f" on {record['host']}" if record.get("host") else "")]
    if record.get("code_version"):
        lines.append(f"  code {record['code_version']}")
    for title, items in (("inputs", record.get("inputs")), ("outputs", record.get("outputs"))):
        items = items or []
        lines.append(f"{title} ({len(items)}):" if items else f"{title}: none")
        for item in items[:20]:
            detail = _details(item, _REF_KEYS)
            lines.append(f"  {ref_text(item)}" + (f"  [{detail}]" if detail else ""))
        if len(items) > 20:
            lines.append(f"  ... {len(items) - 20} more (--full)")
    shown = key_metrics(record.get("metrics"))
    total = len(flatten(record.get("metrics") or {}))
    if shown:
        lines.append(f"metrics ({len(shown)} of {total}):")
        lines += _columns([f"{k} {num(v)}" for k, v in shown])
    if record.get("error"):
        lines.append(f"error: {str(record['error']).strip().splitlines()[0][:300]}")
    lines.append(f"(the config and every metric: raylake runs show {record['run_id']} --full, "
                 "or --json)")
    return lines


def model_summary(mv: dict[str, Any]) -> list[str]:
    """``models show``: the version, stage, flavor, training set, key metrics, stages."""
    lines = [f"{mv['name']}:{mv['version']}  stage {mv.get('stage')}  flavor {mv.get('flavor')}"
             f"  created {str(mv.get('created_at') or '')[:19]}"]
    if mv.get("description"):
        lines.append(f"  {mv['description']}")
    if mv.get("run_id"):
        lines.append(f"  trained by run {mv['run_id']}")
    training = mv.get("training") or {}
    if training.get("table"):
        inputs = ", ".join(ref_text(i) for i in training.get("inputs") or [])
        lines.append(f"  training set {training['table']}@{training.get('version')}"
                     + (f" (from {inputs})" if inputs else ""))
    features = [f.get("name") for f in mv.get("features") or []]
    if features:
        more = f" ... +{len(features) - 8}" if len(features) > 8 else ""
        lines.append(f"  features ({len(features)}): {', '.join(map(str, features[:8]))}{more}")
    if mv.get("artifact_uri") or mv.get("size_bytes"):
        size = mv.get("size_bytes")
        lines.append(f"  artifact {mv.get('artifact_uri') or mv.get('artifact')}"
                     + (f" ({int(size):,} bytes)" if size else ""))
    shown = key_metrics(mv.get("metrics"))
    if shown:
        lines.append("metrics:")
        lines += _columns([f"{k} {num(v)}" for k, v in shown])
    history = mv.get("history") or []
    if history:
        lines.append("stages:")
        for h in history:
            lines.append(f"  {str(h.get('at'))[:19]}  {h.get('previous_stage') or '-'} -> "
                         f"{h.get('stage')}" + (f"  ({h['reason']})" if h.get("reason") else ""))
    lines.append(f"(the config, preprocessing and every metric: raylake models show "
                 f"{mv['name']}:{mv['version']} --full, or --json)")
    return lines


def full_text(record: dict[str, Any], summary: list[str]) -> list[str]:
    """``--full``: the summary, every metric one per line, then everything else of the
    record (config and the like) as YAML."""
    import yaml

    lines = list(summary[:-1])
    flat = flatten(record.get("metrics") or {})
    if flat:
        lines.append("all metrics:")
        lines += [f"  {k} {num(v)}" for k, v in flat.items()]
    rest = {k: v for k, v in record.items() if k not in ("metrics",)}
    lines.append("record:")
    text = yaml.safe_dump(json.loads(json.dumps(rest, default=str)), sort_keys=False,
                          width=100)
    lines += ["  " + line for line in text.rstrip().splitlines()]
    return lines


def _columns(cells: list[str], per_line: int = 3) -> list[str]:
    width = max(len(c) for c in cells) + 3
    return ["  " + "".join(c.ljust(width) for c in cells[i:i + per_line]).rstrip()
            for i in range(0, len(cells), per_line)]
