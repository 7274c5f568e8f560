"""The data subject of an erasure: the key (``email=alice@example.com``), the forms its
value takes in the lake, and the row matchers.

A value is stored as given, hashed (HMAC-SHA256 hex) or tokenized (``tok_...``) by the
ingestion policies, so a column is compared with all three forms; a hashed or tokenized
form needs the key from the environment. Email addresses compare case-insensitively (as
mail systems treat them). In free text (a quarantine's raw row, a request log's features,
a column classified as text that carries the entity) a form matches where it stands
alone: not inside a longer address (``malice@...``, ``...@example.com.au``).

The value itself is never written anywhere: records name the key column and a digest of
the value (HMAC-SHA256 with the governance key when it is set, else SHA-256).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raylake.config.governance import PATTERN_ENTITIES, Entity
from raylake.errors import GovernanceError


def parse_key(text: str) -> tuple[str, str]:
    """``COLUMN=VALUE`` (the command's ``--key``) as (column, value); GovernanceError
    without the ``=``, a column or a value. The value is never quoted back."""
    column, sep, value = str(text).partition("=")
    column = column.strip()
    if not sep:
        raise GovernanceError("--key needs COLUMN=VALUE, e.g. --key email=alice@example.com; "
                              "the key given has no '=' (it is not printed: it may be the "
                              "subject's value).")
    if not column:
        raise GovernanceError("--key needs a column before the '=', e.g. "
                              "--key email=alice@example.com.")
    if not value.strip():
        raise GovernanceError(f"--key {column}= has an empty value; give the subject's value, "
                              f"e.g. --key {column}=alice@example.com.")
    return column, value.strip()


@dataclass(frozen=True)
class Subject:
    """One identifier of the subject: a column and its value (never printed)."""

    column: str
    value: str = field(repr=False)
    entities: frozenset[str]  # entity types the value is (EMAIL_ADDRESS, ...)
    forms: frozenset[str] = field(repr=False)  # compared exactly
    folded: frozenset[str] = field(repr=False)  # compared case-insensitively
    pattern: str = field(repr=False)  # free text: any form, standing alone
    bare: str = field(repr=False, default="")  # bytes (serialized profiles): any form
    digest: str = ""  # what records keep instead of the value



def value_entities(value: str) -> set[str]:
    """The pattern entity types ``value`` is, whole (an email, a phone number, ...)."""
    from raylake.pii.recognizers import whole_match

    arr = pa.array([value], pa.string())
    return {e.value for e in PATTERN_ENTITIES if bool(whole_match(arr, e.value)[0])}


def make_subject(column: str, value: str, entities: Iterable[str], key: bytes | None) -> Subject:
    """The subject's forms: the value, and with ``key`` its hash and token (of the value
    and, for emails, of its lower case)."""
    ents = frozenset(entities)
    folding = Entity.EMAIL_ADDRESS.value in ents
    plain = [value] + ([value.lower()] if folding and value.lower() != value else [])
    forms = set(plain)
    if key is not None:
        from raylake.pii.policies import hash_values, tokenize_values

        arr = pa.array(plain, pa.string())
        forms.update(hash_values(arr, key).to_pylist())
        forms.update(tokenize_values(arr, key).to_pylist())
    folded = frozenset(v.lower() for v in plain) if folding else frozenset()
    alternatives = [re.escape(f) for f in sorted(forms - set(plain))]
    alternatives += [f"(?i:{re.escape(v)})" if folding else re.escape(v) for v in plain]
    # Not inside a longer token: no word character, '.', '+' or '-' before it; none, and
    # no '.' that continues the token, after it ("a@x.com." ends a sentence, "a@x.com.au"
    # is another address).
    bare = "(?:" + "|".join(alternatives) + ")"
    pattern = r"(^|[^\w.+-])" + bare + r"($|[^\w.-]|\.($|[^\w]))"
    return Subject(column, value, ents, frozenset(forms), folded, pattern,
                   bare=bare, digest=digest_of(value, key))


# Records' digests are of this prefix and the value: never equal to the hash policy's
# HMAC of the value, which the erased columns held (a record must not rejoin them).
DIGEST_CONTEXT = b"raylake.erase:"


def digest_of(value: str, key: bytes | None) -> str:
    """What records keep of a value: ``hmac-sha256:<hex>`` with the governance key (no
    one without the key can test a guess), else ``sha256:<hex>``; either of
    ``DIGEST_CONTEXT`` and the value, so whoever holds the value can show it was erased."""
    data = DIGEST_CONTEXT + value.encode()
    if key is not None:
        return "hmac-sha256:" + hmac.digest(key, data, "sha256").hex()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def short(digest: str) -> str:
    """A digest as printed: its kind and first 12 hex digits."""
    kind, _, hexits = digest.partition(":")
    return f"{kind}:{hexits[:12]}"


def match_whole(values: pa.Array | pa.ChunkedArray, subjects: Sequence[Subject]) -> np.ndarray:
    """Per value: True where it is one of a subject's forms (nulls: False)."""
    from raylake.pii.policies import canonical_text, has_text

    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    out = np.zeros(len(arr), bool)
    if not len(arr) or not has_text(arr.type):
        return out
    text = canonical_text(arr)
    forms = sorted({f for s in subjects for f in s.forms})
    out |= _is_in(text, forms)
    folded = sorted({f for s in subjects for f in s.folded})
    if folded:
        out |= _is_in(pc.utf8_lower(text), folded)
    return out


def match_text(values: pa.Array | pa.ChunkedArray, subjects: Sequence[Subject]) -> np.ndarray:
    """Per value: True where free text holds one of a subject's forms standing alone;
    in bytes (a serialized profile, where a string's length prefix may be any byte), any
    form anywhere."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    out = np.zeros(len(arr), bool)
    if not len(arr):
        return out
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    raw = pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)
    if not (raw or pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return out
    for s in subjects:
        hit = pc.match_substring_regex(arr, s.bare if raw else s.pattern)
        out |= hit.fill_null(False).to_numpy(zero_copy_only=False)
    return out


def _is_in(text: pa.Array, forms: Sequence[str]) -> np.ndarray:
    hit = pc.is_in(text, value_set=pa.array(forms, pa.string()))
    return hit.fill_null(False).to_numpy(zero_copy_only=False)


def entities_of_column(classes: Mapping[str, Mapping[str, Mapping[str, object]]],
                       column: str) -> set[str]:
    """The entity types the current classification finds in columns named ``column``."""
    out: set[str] = set()
    for cols in classes.values():
        row = cols.get(column)
        if row is not None:
            out.update(str(e) for e in dict(row.get("entities") or {}))  # type: ignore[call-overload]
    return out
