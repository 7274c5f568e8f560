"""The vendored OpenLineage JSON schemas (``schemas/``, see its README) and the check of an
event against them: the core model, then each facet against its own schema file.

The core schema only asks of a facet that it has ``_producer`` and ``_schemaURL``; a facet's
fields are checked by its own file (``facets/SchemaDatasetFacet.json`` for a dataset's
``schema``), which refers back to the core by its ``$id``. Every file is registered under
its ``$id``, so references resolve offline.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from raylake import __version__
from raylake.errors import GovernanceError

# Who wrote an event or a facet (a URI, as the spec asks; raylake has no home page to name).
PRODUCER = f"urn:raylake:{__version__}"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
CORE_ID = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
RUN_EVENT_URL = f"{CORE_ID}#/$defs/RunEvent"

# Where a facet sits in an event -> the core definition its schema builds on.
_KINDS = {"RunFacet": "run", "JobFacet": "job", "DatasetFacet": "dataset",
          "InputDatasetFacet": "input", "OutputDatasetFacet": "output"}
# jsonschema checks "uri" only with an optional package; an absolute URI is what the
# spec means (producer, schemaURL), so that much is checked here.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s]+$")


@dataclass(frozen=True)
class FacetSchema:
    key: str  # the facet's name in an event: "schema", "dataQualityMetrics", ...
    kind: str  # run | job | dataset | input | output
    url: str  # its _schemaURL: the file's $id and the definition
    validator: Draft202012Validator


def facet(kind: str, key: str, **fields: Any) -> dict[str, Any]:
    """Facet ``key`` of a ``kind`` place (run, job, dataset, input, output): ``fields``
    with the producer and the vendored schema's URL."""
    return {"_producer": PRODUCER, "_schemaURL": facet_url(kind, key), **fields}


def facet_url(kind: str, key: str) -> str:
    """The ``_schemaURL`` of facet ``key`` where ``kind`` facets sit (run, job, dataset,
    input, output); GovernanceError when no vendored schema has it."""
    found = _facets().get((kind, key))
    if found is None:
        raise GovernanceError(
            f"No vendored OpenLineage schema for the {kind} facet {key!r} (files in {SCHEMAS}/"
            "facets). Copy its schema from OpenLineage's spec/facets/ (schemas/README.md).")
    return found.url


def validate_event(event: dict[str, Any]) -> None:
    """Check a RunEvent against the core schema and each facet against its own schema;
    GovernanceError naming the run, the place in the event and what is wrong."""
    errors = sorted(_core().iter_errors(event), key=lambda e: list(e.absolute_path))
    if errors:
        raise _invalid(event, "", errors)
    for where, kind, facets in _facet_maps(event):
        for key, facet in facets.items():
            schema = _facets().get((kind, key))
            if schema is None:
                raise GovernanceError(
                    f"{_which(event)}: {where}.{key} is not a facet of a vendored schema "
                    f"({kind} facets known: {', '.join(sorted(k for c, k in _facets() if c == kind))}).")
            if facet.get("_schemaURL") != schema.url:
                raise GovernanceError(
                    f"{_which(event)}: {where}.{key}._schemaURL is {facet.get('_schemaURL')!r}; "
                    f"the vendored schema is {schema.url!r}.")
            errors = sorted(schema.validator.iter_errors({key: facet}),
                            key=lambda e: list(e.absolute_path))
            if errors:
                raise _invalid(event, where, errors)


def _facet_maps(event: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = [("run.facets", "run", event["run"].get("facets") or {}),
           ("job.facets", "job", event["job"].get("facets") or {})]
    for side, kind in (("inputs", "input"), ("outputs", "output")):
        for i, ds in enumerate(event.get(side) or []):
            out.append((f"{side}[{i}].facets", "dataset", ds.get("facets") or {}))
            out.append((f"{side}[{i}].{kind}Facets", kind, ds.get(f"{kind}Facets") or {}))
    return out


def _which(event: dict[str, Any]) -> str:
    job, run = event.get("job") or {}, event.get("run") or {}
    return (f"OpenLineage {event.get('eventType')} event of job {job.get('name')!r} "
            f"(run {run.get('runId')})")


def _invalid(event: dict[str, Any], where: str, errors: list[Any]) -> GovernanceError:
    shown = "; ".join(f"{'.'.join(str(p) for p in [where, *e.absolute_path] if p != '')}: "
                      f"{e.message}" for e in errors[:3])
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return GovernanceError(f"{_which(event)} does not validate against the OpenLineage "
                           f"schema: {shown}{more}.")


def _format_checker() -> FormatChecker:
    checker = FormatChecker()  # date-time (rfc3339-validator), uuid, ...

    @checker.checks("uri")
    def _is_uri(value: object) -> bool:
        return not isinstance(value, str) or bool(_URI.match(value))

    return checker


@functools.cache
def _registry() -> tuple[Registry, dict[str, dict[str, Any]]]:
    files = [SCHEMAS / "OpenLineage.json", *sorted((SCHEMAS / "facets").glob("*.json"))]
    docs = {}
    for path in files:
        doc = json.loads(path.read_text())
        docs[doc["$id"]] = doc
    registry: Registry = Registry().with_resources(
        (uri, Resource.from_contents(doc)) for uri, doc in docs.items())
    return registry, docs


@functools.cache
def _core() -> Draft202012Validator:
    registry, docs = _registry()
    return Draft202012Validator({"$ref": RUN_EVENT_URL}, registry=registry,
                                format_checker=_format_checker())


@functools.cache
def _facets() -> dict[tuple[str, str], FacetSchema]:
    registry, docs = _registry()
    out = {}
    for uri, doc in docs.items():
        if uri == CORE_ID:
            continue
        for key, prop in doc["properties"].items():
            name = prop["$ref"].rsplit("/", 1)[-1]  # "#/$defs/SchemaDatasetFacet"
            base = next(part["$ref"] for part in doc["$defs"][name]["allOf"]
                        if part.get("$ref", "").startswith(CORE_ID))
            kind = _KINDS[base.rsplit("/", 1)[-1]]
            out[(kind, key)] = FacetSchema(key, kind, f"{uri}#/$defs/{name}",
                                           Draft202012Validator(doc, registry=registry,
                                                                format_checker=_format_checker()))
    return out
