"""Candidate retrieval for recommendations: which nearest-neighbour search to use.

    python benchmarks/ann.py [--items 10000,200000] [--dim 32] [--k 500] [--queries 200]

For each catalogue size: clustered unit vectors (like a two-tower's item tower output:
items near their category's centre), and queries near items. One query at a time on one
thread (a request retrieves for one user), top --k by inner product:

- exact: numpy, a matrix-vector product and ``argpartition`` (the baseline: recall 1);
- faiss ``IndexFlatIP`` (exact, BLAS);
- hnswlib ``Index`` (HNSW, M=16, ef_construction=200, ef=600);
- faiss ``IndexHNSWFlat`` (the same graph parameters).

Printed per size: build seconds, query milliseconds and recall@k against exact. The last
line is for the largest size, the ratio the exact query's time over the fastest
approximate one's:
    ann: items <n>, exact_ms <a>, hnswlib_ms <b>, faiss_hnsw_ms <c>, recall <r>, ratio <exact/best>
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _recall(found: list[np.ndarray], exact: list[np.ndarray], k: int) -> float:
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k
                          for a, b in zip(found, exact, strict=True)]))


def _timed(fn, queries: np.ndarray) -> tuple[list[np.ndarray], float]:
    start = time.perf_counter()
    out = [fn(q) for q in queries]
    return out, (time.perf_counter() - start) / len(queries) * 1e3


def run(n: int, dim: int, k: int, n_queries: int, seed: int = 0) -> dict[str, float]:
    import faiss
    import hnswlib

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(64, dim))
    items = _unit(centres[rng.integers(0, 64, n)] + 0.5 * rng.normal(size=(n, dim)))
    queries = _unit(items[rng.integers(0, n, n_queries)]
                    + 0.1 * rng.normal(size=(n_queries, dim)))

    def exact(v: np.ndarray) -> np.ndarray:
        s = items @ v
        top = np.argpartition(-s, k)[:k]
        return top[np.argsort(-s[top])]

    truth, exact_ms = _timed(exact, queries)
    out: dict[str, float] = {"exact_ms": exact_ms}

    flat = faiss.IndexFlatIP(dim)
    flat.add(items)
    _, out["faiss_flat_ms"] = _timed(lambda v: flat.search(v[None], k)[1][0], queries)

    start = time.perf_counter()
    h = hnswlib.Index(space="ip", dim=dim)
    h.init_index(max_elements=n, ef_construction=200, M=16)
    h.add_items(items, np.arange(n))
    out["hnswlib_build_s"] = time.perf_counter() - start
    h.set_ef(max(600, k))
    h.set_num_threads(1)
    found, out["hnswlib_ms"] = _timed(lambda v: h.knn_query(v[None], k=k)[0][0], queries)
    out["hnswlib_recall"] = _recall(found, truth, k)

    start = time.perf_counter()
    f = faiss.IndexHNSWFlat(dim, 16, faiss.METRIC_INNER_PRODUCT)
    f.hnsw.efConstruction = 200
    f.add(items)
    out["faiss_hnsw_build_s"] = time.perf_counter() - start
    f.hnsw.efSearch = max(600, k)
    found, out["faiss_hnsw_ms"] = _timed(lambda v: f.search(v[None], k)[1][0], queries)
    out["faiss_hnsw_recall"] = _recall(found, truth, k)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", default="10000,200000", help="catalogue sizes, comma-separated")
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--k", type=int, default=500)
    p.add_argument("--queries", type=int, default=200)
    a = p.parse_args()
    sizes = [int(s) for s in a.items.split(",")]
    for n in sizes:
        r = run(n, a.dim, a.k, a.queries)
        print(f"items {n:,}: exact {r['exact_ms']:.2f} ms, faiss flat {r['faiss_flat_ms']:.2f} ms, "
              f"hnswlib {r['hnswlib_ms']:.2f} ms (recall {r['hnswlib_recall']:.3f}, build "
              f"{r['hnswlib_build_s']:.1f} s), faiss hnsw {r['faiss_hnsw_ms']:.2f} ms (recall "
              f"{r['faiss_hnsw_recall']:.3f}, build {r['faiss_hnsw_build_s']:.1f} s)", flush=True)
    best = min(r["hnswlib_ms"], r["faiss_hnsw_ms"])
    print(f"ann: items {sizes[-1]}, exact_ms {r['exact_ms']:.2f}, hnswlib_ms {r['hnswlib_ms']:.2f}, "
          f"faiss_hnsw_ms {r['faiss_hnsw_ms']:.2f}, recall "
          f"{min(r['hnswlib_recall'], r['faiss_hnsw_recall']):.3f}, ratio {r['exact_ms'] / best:.2f}")


if __name__ == "__main__":
    main()
