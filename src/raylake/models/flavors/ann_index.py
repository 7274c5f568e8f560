"""The ``ann_index`` flavor: a nearest-neighbour index over item vectors
(:class:`raylake.models.ann.AnnIndex`), stored without pickle.

The artifact is an uncompressed zip of plain files: ``manifest.json`` (kind, dimension,
item count, graph parameters), ``ids.npy`` (int64) and ``vectors.npy`` (float32), written
with ``np.save`` and read with ``np.load(allow_pickle=False)``, and for an ``hnsw`` index
``graph.faiss``, faiss's own binary format (``serialize_index`` / ``deserialize_index``),
which holds numbers only. Members are written in a fixed order with a fixed date, so the
same index gives the same bytes (and the same registry hash).

An index is searched (``model.search(queries, k)``), not used to score rows of a table:
:meth:`AnnIndexFlavor.predict` says so. faiss is imported only when an ``hnsw`` index is
saved or loaded.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from raylake.errors import ArtifactError, ModelError
from raylake.models.flavors.base import Flavor, SavedModel

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from raylake.models.spec import FeatureSpec

NAME = "ann_index"
FORMAT = "raylake.ann_index"
FORMAT_VERSION = 1
MANIFEST, IDS, VECTORS, GRAPH = "manifest.json", "ids.npy", "vectors.npy", "graph.faiss"
_DATE = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: no clock in the bytes


class AnnIndexFlavor(Flavor):
    name = NAME
    extension = "zip"

    def save(self, model: Any) -> SavedModel:
        """``model``'s ids, vectors and (hnsw) graph as an uncompressed zip of .npy files,
        faiss's binary graph and a JSON manifest; ModelError unless it is an AnnIndex."""
        import numpy as np

        from raylake.models.ann import AnnIndex, load_faiss

        if not isinstance(model, AnnIndex):
            raise ModelError(f"An ann_index model must be a raylake.models.ann.AnnIndex, got "
                             f"{type(model).__name__}; build one with AnnIndex.build(ids, "
                             "vectors, kind).")
        manifest: dict[str, Any] = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "kind": model.kind,
            "dim": model.dim, "items": len(model), "params": dict(model.params),
            "metric": "inner_product",
        }
        members = [(IDS, _npy(model.ids)), (VECTORS, _npy(model.vectors))]
        if model.kind == "hnsw":
            faiss = load_faiss()
            members.append((GRAPH, np.asarray(faiss.serialize_index(model.graph)).tobytes()))
            manifest["faiss"] = faiss.__version__
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for name, data in [(MANIFEST, json.dumps(manifest, sort_keys=True).encode()),
                               *members]:
                zf.writestr(zipfile.ZipInfo(name, _DATE), data)
        info = {k: manifest[k] for k in ("format", "format_version", "kind", "dim", "items",
                                         "params")}
        return SavedModel(buf.getvalue(), self.extension, info)

    def load(self, data: bytes, info: dict[str, Any]) -> Any:
        """The AnnIndex in ``data``: arrays read with ``allow_pickle=False``, the graph with
        faiss's reader. ArtifactError when the bytes are not such a zip or its files do not
        agree with each other."""
        import numpy as np

        from raylake.models.ann import AnnIndex

        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile as exc:
            raise ArtifactError(f"The ann_index artifact is not a zip archive: {exc}.") from exc
        with zf:
            names = zf.namelist()
            manifest = _manifest(_member(zf, MANIFEST))
            expected = [MANIFEST, IDS, VECTORS] + ([GRAPH] if manifest["kind"] == "hnsw" else [])
            if sorted(names) != sorted(expected):
                raise ArtifactError(f"The ann_index artifact holds {sorted(names)}, a "
                                    f"{manifest['kind']} index {sorted(expected)}.")
            ids, vectors = _array(zf, IDS), _array(zf, VECTORS)
            graph = None
            if manifest["kind"] == "hnsw":
                graph = _graph(_member(zf, GRAPH), manifest)
        if (len(ids), int(vectors.shape[1]) if vectors.ndim == 2 else -1) != (
                manifest["items"], manifest["dim"]):
            raise ArtifactError(f"The ann_index arrays hold ids {ids.shape} and vectors "
                                f"{vectors.shape}; the manifest says {manifest['items']} items "
                                f"of dimension {manifest['dim']}.")
        try:
            return AnnIndex(ids.astype(np.int64, copy=False), vectors, manifest["kind"],
                            params=dict(manifest["params"]), graph=graph)
        except ModelError as exc:
            raise ArtifactError(f"The ann_index artifact is not a valid index: {exc}") from exc

    def predict(self, model: Any, spec: FeatureSpec, table: pa.Table) -> np.ndarray:
        """Refused: an index answers searches, not rows of a table."""
        raise ModelError("An ann_index model is a nearest-neighbour index, not a row scorer: "
                         "load it (`ModelRegistry.load`) and call model.search(queries, k).")

    def predictor(self, model: Any, spec: FeatureSpec,
                  threads: int = 1) -> Callable[[pa.Table], np.ndarray]:
        """Refused, as :meth:`predict`."""
        raise ModelError("An ann_index model is a nearest-neighbour index, not a row scorer: "
                         "load it (`ModelRegistry.load`) and call model.search(queries, k).")


def _npy(array: Any) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _member(zf: zipfile.ZipFile, name: str) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ArtifactError(f"The ann_index artifact has no {name}.") from None
    if info.compress_type != zipfile.ZIP_STORED:
        # Written uncompressed: a compressed member is not one of ours (and could unpack
        # to far more than the artifact's size).
        raise ArtifactError(f"The ann_index artifact's {name} is compressed; raylake writes "
                            "its members uncompressed. Register the index again.")
    return zf.read(name)


def _manifest(data: bytes) -> dict[str, Any]:
    try:
        m = json.loads(data)
    except ValueError as exc:
        raise ArtifactError(f"The ann_index manifest is not JSON: {exc}.") from exc
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ArtifactError(f"The ann_index manifest is not a {FORMAT} manifest.")
    if m.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"The ann_index artifact has format version "
                            f"{m.get('format_version')!r}; this raylake reads version "
                            f"{FORMAT_VERSION}. Build and register the index again.")
    if m.get("kind") not in ("exact", "hnsw") or not isinstance(m.get("params"), dict) or not (
            isinstance(m.get("items"), int) and isinstance(m.get("dim"), int)):
        raise ArtifactError(f"The ann_index manifest lacks a kind, item count, dimension or "
                            f"parameters: {json.dumps(m)[:200]}.")
    return m


def _array(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    import numpy as np

    try:
        return np.load(io.BytesIO(_member(zf, name)), allow_pickle=False)
    except ValueError as exc:  # an object array (needs pickle) or not an .npy file
        raise ArtifactError(f"The ann_index artifact's {name} is not a plain .npy array "
                            f"readable without pickle: {exc}.") from exc


def _graph(data: bytes, manifest: dict[str, Any]) -> Any:
    import numpy as np

    from raylake.models.ann import load_faiss

    faiss = load_faiss()
    try:
        graph = faiss.deserialize_index(np.frombuffer(data, np.uint8))
    except RuntimeError as exc:
        raise ArtifactError(f"The ann_index graph is not a faiss index: "
                            f"{str(exc).splitlines()[0]}.") from exc
    if not isinstance(graph, faiss.IndexHNSWFlat):
        raise ArtifactError(f"The ann_index graph is a faiss {type(graph).__name__}, not an "
                            "IndexHNSWFlat.")
    if graph.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ArtifactError("The ann_index graph does not rank by inner product.")
    graph.hnsw.efSearch = int(manifest["params"].get("ef_search", graph.hnsw.efSearch))
    return graph
