"""PII detection on a generated table of 100,000 rows: precision and recall per entity type
against the planted ground truth, and scan speed against Presidio's BatchAnalyzerEngine.

    python benchmarks/pii_scan.py [--rows 100000] [--sample 5000] [--seed 0] [--no-presidio]

The table (benchmarks/pii_data.py, fixed seed) has one column per entity type, free-text
columns with PII planted in some rows, and decoys: card-length order numbers failing Luhn,
IBANs with wrong check digits or unknown countries, SSNs the SSA never issues, ``300.1.2.3``
and version strings, times, MAC addresses, ISBNs, ``icon@2x.png``.

raylake (``raylake.pii.recognizers.find``) scans every text column of the whole table for
the six pattern entities. A match counts as a true positive when its span (column, row,
start, end) is exactly a planted one: precision = exact matches / matches found, recall =
exact matches / values planted. PERSON is planted in the ``name`` column but needs an NER
model (``governance.scan.ner_model``), so it is reported, not scored.

Speed: raylake and Presidio scan the same random sample of rows (``--sample``, every text
column, the same six entities). Presidio runs in its own virtual env (.bench/presidio,
created on first use, see benchmarks/_presidio_env.py) with a blank ``spacy.blank("en")``
pipeline (pattern recognizers only; it cannot download a model offline), through
``BatchAnalyzerEngine.analyze_dict``; its time excludes start-up and one warm-up call
(raylake's: the median of three runs after a warm-up).
Presidio's precision and recall on that sample are printed beside raylake's, and the
columns' classes (raylake.pii.classify on a sample of ``governance.scan.sample_rows``).

Last line:

    pii: precision <p>, recall <r>, raylake_rows_per_s <a>, presidio_rows_per_s <b>

p and r: the minimum over the checksum-backed types (CREDIT_CARD, IBAN_CODE, US_SSN,
IP_ADDRESS: octet ranges and IPv6 parse) and EMAIL_ADDRESS on the whole table (PHONE_NUMBER
is in the table above it); a and b: rows per second on the same sample. Targets: p, r >=
0.95; a >= 5 b.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _presidio_env import presidio_python  # noqa: E402
from pii_data import make_table  # noqa: E402

from raylake.config.governance import PATTERN_ENTITIES, ScanConfig  # noqa: E402
from raylake.pii.classify import classify_table, sample_rows  # noqa: E402
from raylake.pii.recognizers import find  # noqa: E402

ENTITIES = [e.value for e in PATTERN_ENTITIES]
SCORED = ["CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS", "EMAIL_ADDRESS"]

PRESIDIO = r"""
import json, sys, time, logging
logging.disable(logging.CRITICAL)
import spacy
from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine
from presidio_analyzer.nlp_engine import SpacyNlpEngine

class BlankSpacy(SpacyNlpEngine):
    # A blank English pipeline: tokens for the context words, no model to download.
    def load(self):
        self.nlp = {"en": spacy.blank("en")}

engine = BlankSpacy()
engine.load()
batch = BatchAnalyzerEngine(AnalyzerEngine(nlp_engine=engine, supported_languages=["en"]))
data = json.load(open(sys.argv[1]))
entities = data["entities"]
columns = data["columns"]
list(batch.analyze_dict({"warm": ["warm-up a@example.com 4111111111111111"]}, language="en",
                        entities=entities))
t = time.perf_counter()
results = list(batch.analyze_dict(columns, language="en", entities=entities))
seconds = time.perf_counter() - t
found = []
for res in results:
    for row, hits in enumerate(res.recognizer_results):
        for h in hits:
            found.append([res.key, row, h.entity_type, h.start, h.end])
print(json.dumps({"seconds": seconds, "found": found}))
"""


def text_columns(table: pa.Table) -> list[str]:
    return [f.name for f in table.schema if pa.types.is_string(f.type)]


def scan(table: pa.Table) -> tuple[float, set[tuple[str, int, str, int, int]]]:
    """raylake over every text column: seconds and the spans found."""
    found: set[tuple[str, int, str, int, int]] = set()
    t = time.perf_counter()
    results = {col: find(table.column(col), ENTITIES) for col in text_columns(table)}
    seconds = time.perf_counter() - t
    for col, by_entity in results.items():
        for entity, m in by_entity.items():
            found.update((col, r, entity, s, e) for r, s, e in
                         zip(m.rows.tolist(), m.starts.tolist(), m.ends.tolist()))
    return seconds, found


def planted(truth: pa.Table, rows: np.ndarray | None = None) -> set[tuple[str, int, str, int, int]]:
    """Ground-truth spans; with ``rows``, those in the sample, renumbered 0..n-1."""
    t = truth.to_pydict()
    spans = zip(t["column"], t["row"], t["entity"], t["start"], t["end"])
    if rows is None:
        return set(spans)
    pos = {int(r): i for i, r in enumerate(rows)}
    return {(c, pos[r], e, s, n) for c, r, e, s, n in spans if r in pos}


def scores(found: set, truth: set) -> dict[str, tuple[float, float, int, int, int]]:
    """entity -> (precision, recall, true positives, found, planted)."""
    out = {}
    for entity in [*ENTITIES, "PERSON"]:
        f = {x for x in found if x[2] == entity}
        p = {x for x in truth if x[2] == entity}
        tp = len(f & p)
        out[entity] = (tp / len(f) if f else float("nan"), tp / len(p) if p else float("nan"),
                       tp, len(f), len(p))
    return out


def run_presidio(sample: pa.Table) -> tuple[float, set]:
    python = presidio_python()
    columns = {c: [v if v is not None else "" for v in sample.column(c).to_pylist()]
               for c in text_columns(sample)}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump({"entities": ENTITIES, "columns": columns}, f)
        f.flush()
        out = subprocess.run([str(python), "-c", PRESIDIO, f.name], capture_output=True,
                             text=True)
    if out.returncode != 0:
        raise SystemExit(f"presidio failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return res["seconds"], {tuple(x) for x in res["found"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--sample", type=int, default=5_000, help="rows both scanners time")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-presidio", action="store_true")
    args = ap.parse_args()

    t = time.perf_counter()
    table, truth = make_table(args.rows, args.seed)
    print(f"generated {table.num_rows} rows x {len(text_columns(table))} text columns, "
          f"{truth.num_rows} planted values ({time.perf_counter() - t:.1f} s)")
    find(table.column("notes").slice(0, 100), ENTITIES)  # warm-up (regex compilation)
    seconds, found = scan(table)
    full = scores(found, planted(truth))
    print(f"raylake, whole table: {seconds:.2f} s, {table.num_rows / seconds:,.0f} rows/s")

    scan_cfg = ScanConfig()
    classes = classify_table(sample_rows(table, scan_cfg.sample_rows, args.seed), scan_cfg, {})
    print(f"\ncolumn classes (a {scan_cfg.sample_rows}-row sample, default scan config):")
    for c in classes:
        kind = "whole" if c.whole else "text" if c.entities else ""
        found = ", ".join(f"{e} {share:.1%}" for e, share in c.entities.items())
        print(f"  {c.column:<13} {c.data_class:<10} {kind:<5} {found}")

    rows = np.sort(np.random.default_rng(args.seed).choice(table.num_rows, args.sample,
                                                          replace=False))
    sample = table.take(pa.array(rows))
    ours_s = float(np.median([scan(sample)[0] for _ in range(3)]))
    theirs_s, theirs = (float("nan"), set()) if args.no_presidio else run_presidio(sample)
    on_sample = scores(theirs, planted(truth, rows))

    print(f"\n{'entity':<14} {'precision':>9} {'recall':>7} {'found':>8} {'planted':>8}"
          f"   presidio on the sample: {'precision':>9} {'recall':>7}")
    for entity, (p, r, _, nf, npl) in full.items():
        pp, pr = on_sample[entity][:2]
        note = "  (needs governance.scan.ner_model)" if entity == "PERSON" else ""
        print(f"{entity:<14} {p:>9.4f} {r:>7.4f} {nf:>8} {npl:>8}   "
              f"{'':>22} {pp:>9.4f} {pr:>7.4f}{note}")
    p = min(full[e][0] for e in SCORED)
    r = min(full[e][1] for e in SCORED)
    a, b = args.sample / ours_s, args.sample / theirs_s
    print(f"\nsample of {args.sample} rows: raylake {ours_s:.3f} s, presidio {theirs_s:.2f} s "
          f"({a / b:.1f}x)")
    print(f"(p, r: min over {', '.join(SCORED)}; rows/s on the sample)")
    print(f"pii: precision {p:.4f}, recall {r:.4f}, raylake_rows_per_s {a:.0f}, "
          f"presidio_rows_per_s {b:.0f}")


if __name__ == "__main__":
    main()
