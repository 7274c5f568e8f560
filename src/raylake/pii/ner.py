"""PERSON and LOCATION through a spaCy named-entity model that the user installs.

Names and addresses have no pattern or checksum; only a statistical model finds them, and
no English model is among the packages raylake may depend on. So spaCy is not a
dependency: ``governance.scan.ner_model`` names a model the user installed (e.g.
``pip install spacy && python -m spacy download en_core_web_sm``), imported here lazily.
Without it, PERSON and LOCATION are not detected (docs/governance.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from raylake.errors import GovernanceError
from raylake.pii.types import Matches

# spaCy's labels -> raylake's entities: OntoNotes (en_core_web_*) and WikiNER (xx_ent_wiki).
LABELS = {"PERSON": "PERSON", "PER": "PERSON",
          "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION"}


@lru_cache(maxsize=2)
def load_model(name: str) -> Any:
    """The spaCy pipeline ``name``; GovernanceError saying what to install when spaCy or
    the model is missing."""
    try:
        spacy = importlib.import_module("spacy")
    except ImportError as exc:
        raise GovernanceError(
            f"governance.scan.ner_model={name!r} needs spaCy, which raylake does not "
            f"install: pip install spacy && python -m spacy download {name} (or pip install "
            "the model's package); or set governance.scan.ner_model=null, and PERSON and "
            "LOCATION are not detected.") from exc
    try:
        return spacy.load(name)
    except (OSError, ImportError) as exc:
        raise GovernanceError(
            f"governance.scan.ner_model={name!r} is not an installed spaCy model: install it "
            f"with python -m spacy download {name} (or pip install the model's package), or "
            "set governance.scan.ner_model=null, and PERSON and LOCATION are not "
            "detected.") from exc


def find_entities(values: pa.Array, entities: Sequence[str], model: str,
                  batch_size: int = 256) -> dict[str, Matches]:
    """PERSON and LOCATION spans in an array of strings, by the model's entities."""
    nlp = load_model(model)
    wanted = set(entities)
    texts = values.to_pylist()
    rows = [i for i, t in enumerate(texts) if t]
    found: dict[str, tuple[list[int], list[int], list[int]]] = {e: ([], [], []) for e in entities}
    for row, doc in zip(rows, nlp.pipe((texts[i] for i in rows), batch_size=batch_size)):
        for ent in doc.ents:
            entity = LABELS.get(ent.label_)
            if entity in wanted:
                r, s, e = found[entity]
                r.append(row)
                s.append(ent.start_char)
                e.append(ent.end_char)
    return {entity: Matches(*(np.asarray(a, np.int64) for a in spans)) if spans[0]
            else Matches.empty() for entity, spans in found.items()}
