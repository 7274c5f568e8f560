"""What a label matrix says about its labeling functions (Snorkel's ``LFAnalysis``): per LF
its polarity, coverage, overlap and conflict with the others, and on a labelled dev set its
empirical accuracy; and the dev set itself, drawn reproducibly from a labelled table."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from raylake.labeling.errors import DevSetError
from raylake.labeling.lfs import ABSTAIN


@dataclass
class LFStats:
    name: str
    polarity: list[int]
    coverage: float
    overlap: float
    conflict: float
    errors: int = 0
    dev_votes: int | None = None
    dev_correct: int | None = None
    accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the run record."""
        return dict(self.__dict__)


def lf_summary(L: np.ndarray, names: list[str], errors: dict[str, int] | None = None,
               y: np.ndarray | None = None, L_dev: np.ndarray | None = None) -> list[LFStats]:
    """Coverage (share of rows an LF votes on), overlap (share where it and another LF
    vote), conflict (share where another LF votes a different class) and, with a dev
    matrix ``L_dev`` and its gold labels ``y``, each LF's empirical accuracy there."""
    L = np.asarray(L)
    n = max(L.shape[0], 1)
    voted = L != ABSTAIN
    n_voting = voted.sum(axis=1)
    out = []
    for j, name in enumerate(names):
        col, v = L[:, j], voted[:, j]
        others = n_voting - v
        rest = np.delete(L, j, axis=1)
        conflict = v & ((rest != ABSTAIN) & (rest != col[:, None])).any(axis=1)
        s = LFStats(name, sorted(int(c) for c in np.unique(col[v])), float(v.sum() / n),
                    float((v & (others > 0)).sum() / n), float(conflict.sum() / n),
                    int((errors or {}).get(name, 0)))
        if y is not None and L_dev is not None:
            dv = L_dev[:, j] != ABSTAIN
            s.dev_votes = int(dv.sum())
            s.dev_correct = int((L_dev[dv, j] == y[dv]).sum())
            s.accuracy = float(s.dev_correct / s.dev_votes) if s.dev_votes else None
        out.append(s)
    return out


def totals(L: np.ndarray) -> dict[str, float]:
    """The LF set's coverage (rows with a vote), overlap (two or more) and conflict."""
    L = np.asarray(L, dtype=np.int16)
    n = max(L.shape[0], 1)
    voted = L != ABSTAIN
    lo = np.where(voted, L, np.iinfo(np.int16).max).min(axis=1) if L.size else np.zeros(0)
    hi = np.where(voted, L, -2).max(axis=1) if L.size else np.zeros(0)
    return {"rows": int(L.shape[0]), "coverage": float(voted.any(axis=1).sum() / n),
            "overlap": float((voted.sum(axis=1) >= 2).sum() / n),
            "conflict": float(((lo != hi) & voted.any(axis=1)).sum() / n)}


def _rank(key_values: list[tuple[Any, ...]], seed: int) -> np.ndarray:
    h = [int.from_bytes(hashlib.blake2b(repr((seed, k)).encode(), digest_size=8).digest(),
                        "little") for k in key_values]
    return np.argsort(np.asarray(h, dtype=np.uint64), kind="stable")


def dev_sample(table: pa.Table, key: list[str], label: str, rows: int, seed: int,
               cardinality: int, source: str = "the dev table") -> tuple[pa.Table, np.ndarray]:
    """The dev set: the ``rows`` rows of ``table`` whose key hashes lowest (with ``seed``),
    so the same table gives the same dev set everywhere; their key columns and gold labels.
    DevSetError when the label column is missing, has nulls or values outside the classes,
    or holds a single class (accuracies on one class say nothing about the other)."""
    if label not in table.column_names:
        raise DevSetError(f"The dev set's label column {label!r} is not in {source} (columns: "
                          f"{', '.join(table.column_names)}); set labeling.dev.label.")
    if table.num_rows < 2:
        raise DevSetError(f"{source} has {table.num_rows} row(s); a dev set needs labelled rows of "
                          "every class (e.g. 100).")
    keys = list(zip(*[table.column(k).to_pylist() for k in key]))
    pick = np.sort(_rank(keys, seed)[:rows])
    dev = table.take(pa.array(pick))
    col = dev.column(label)
    if col.null_count:
        raise DevSetError(f"{col.null_count} dev row(s) of {source} have no {label!r}; label them "
                          "or filter them out first.")
    y = np.asarray(col.to_numpy(zero_copy_only=False)).astype(np.int64)
    check_dev_labels(y, cardinality, source)
    return dev.select([*key]), y


def check_dev_labels(y: np.ndarray, cardinality: int, source: str = "the dev set") -> None:
    """DevSetError for labels outside 0..cardinality-1 or a dev set of one class."""
    classes = np.unique(y)
    bad = [int(c) for c in classes if not 0 <= c < cardinality]
    if bad:
        raise DevSetError(f"The dev labels of {source} hold {bad}, outside the classes "
                          f"0..{cardinality - 1} (labeling.cardinality={cardinality}).")
    if len(classes) < 2:
        raise DevSetError(
            f"The dev set ({len(y)} rows of {source}) holds one class only ({int(classes[0])}): "
            "an LF's accuracy on it says nothing about the other class, and a label model "
            "scored on it would look perfect by predicting that class. Give it labelled rows "
            "of every class (raise labeling.dev.rows, or point labeling.dev.table at a "
            "labelled table that has both).")


def align(matrix: pa.Table, lfs: list[str], keys: pa.Table) -> np.ndarray:
    """The matrix rows of the given keys, in their order (first match per key);
    DevSetError naming a key the matrix lacks."""
    names = keys.column_names
    index: dict[tuple[Any, ...], int] = {}
    for i, k in enumerate(zip(*[matrix.column(c).to_pylist() for c in names])):
        index.setdefault(k, i)
    want = list(zip(*[keys.column(c).to_pylist() for c in names]))
    missing = [k for k in want if k not in index]
    if missing:
        raise DevSetError(f"{len(missing)} dev row(s) are not in the label matrix (first: "
                          f"{missing[0]}); build the matrix over the table the dev set is drawn "
                          "from (`raylake label apply`).")
    rows = np.asarray([index[k] for k in want], np.int64)
    return np.stack([matrix.column(n).to_numpy() for n in lfs], axis=1)[rows]


def report_text(stats: list[LFStats], tot: dict[str, float], classes: list[str]) -> str:
    """The table `raylake label analyze` prints."""
    def cls(c: int) -> str:
        return classes[c] if c < len(classes) else str(c)

    lines = [f"{'lf':<16} {'polarity':<10} {'coverage':>8} {'overlap':>8} {'conflict':>8} "
             f"{'errors':>6} {'dev acc':>8} {'dev n':>6}"]
    for s in stats:
        acc = f"{s.accuracy:.3f}" if s.accuracy is not None else "-"
        dn = str(s.dev_votes) if s.dev_votes is not None else "-"
        lines.append(f"{s.name:<16} {','.join(cls(c) for c in s.polarity) or '-':<10} "
                     f"{s.coverage:>8.3f} {s.overlap:>8.3f} {s.conflict:>8.3f} {s.errors:>6} "
                     f"{acc:>8} {dn:>6}")
    lines.append(f"{'all':<16} {'':<10} {tot['coverage']:>8.3f} {tot['overlap']:>8.3f} "
                 f"{tot['conflict']:>8.3f}  ({tot['rows']:,} rows)")
    return "\n".join(lines)
