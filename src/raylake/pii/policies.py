"""Policies: what happens to a classified column before anything is written.

One policy per column (``resolve_policies``: the table's own policy for the column, else
the strictest policy of the entity types found in it, else its class's; ``keep`` is the
absence of a policy). ``check_policies`` refuses a policy that does not fit its column's
type before anything is read; ``output_schema`` is the table's schema once they ran;
``apply_policies`` runs them on a block of rows:

- ``mask``: all but the last ``keep_last`` characters become ``mask_char`` (a value no
  longer than ``keep_last`` is masked whole: nothing shows a value entirely);
- ``hash``: keyed HMAC-SHA256 of the value's canonical text, as 64 hex digits: equal values
  stay equal (joins, counts, erasure by key) and nobody without the key can test a guess;
- ``tokenize``: deterministic AES-SIV of the canonical text, ``tok_`` + URL-safe base64:
  equal values stay equal, and ``detokenize_values`` gives the text back with the key;
- ``drop``: the column is not written;
- ``generalize``: dates and timestamps truncated to ``unit`` (type kept), numbers to the
  lower edge of their bin in ``bins`` (float64).

Free-text columns (``ColumnClass.whole`` False: comments that carry an email) keep their
text: mask, hash and tokenize act on each recognizer match in it, so the rest of the text
stays readable. ``redact_text`` replaces each match by ``<ENTITY>`` (raw text bound for a
quarantine).

The key (at least 16 bytes) comes from the environment only (``key_from_env``), never from
config; hash uses it as the HMAC key, tokenize an AES-SIV key derived from it, so the two
never share key material.

The canonical text of a value: strings as they are, integers and decimals in decimal, floats
in their shortest round-trip form (Arrow's), booleans ``true``/``false``, dates
``YYYY-MM-DD``, times and timestamps Python's ``isoformat()``. Erasure hashes a subject's
key with ``hash_values`` too, so both sides always agree.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raylake.config.governance import PolicyAction, PolicyConfig
from raylake.errors import GovernanceError, did_you_mean
from raylake.pii.types import ColumnClass, Matches

Values: TypeAlias = "pa.Array | pa.ChunkedArray"
# (values, entities) -> matches per entity: raylake.pii.recognizers.find by default.
Finder: TypeAlias = "Callable[[pa.Array, Sequence[str]], dict[str, Matches]]"

MIN_KEY_BYTES = 16
TOKEN_PREFIX = "tok_"
# Context of the key derivation: the tokenization key is not the HMAC key.
_SIV_INFO = b"raylake.pii.tokenize.aes-siv.v1"
# Least to most strict: a column whose entity types have different policies gets the
# strictest (free text with an email to mask and a card number to hash is hashed).
STRICTNESS = [PolicyAction.keep, PolicyAction.generalize, PolicyAction.mask,
              PolicyAction.tokenize, PolicyAction.hash, PolicyAction.drop]
_TEXT_ACTIONS = (PolicyAction.mask, PolicyAction.hash, PolicyAction.tokenize)


# -- the key -------------------------------------------------------------------------------

def key_from_env(env: str) -> bytes:
    """The key held by the environment variable ``env`` (its UTF-8 bytes, at least 16);
    GovernanceError naming the variable and how to set it. The key is never printed."""
    value = os.environ.get(env)
    how = (f"set it in the environment of the job or server, e.g. "
           f"`export {env}=\"$(openssl rand -hex 32)\"`, and keep it: the same key must hash "
           "and tokenize every run, or equal values stop matching (governance.key_env "
           "names the variable; the key itself is never config)")
    if not value:
        raise GovernanceError(f"The hash and tokenize policies need a key, and the "
                              f"environment variable {env} is not set: {how}.")
    key = value.encode()
    if len(key) < MIN_KEY_BYTES:
        raise GovernanceError(f"The key in the environment variable {env} is {len(key)} "
                              f"bytes; it needs at least {MIN_KEY_BYTES}: {how}.")
    return key


# -- canonical text, hash, tokens ------------------------------------------------------------

def _array(values: Values) -> pa.Array:
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr


def has_text(t: pa.DataType) -> bool:
    """Whether values of type ``t`` have a canonical text (mask, hash and tokenize)."""
    return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
            or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
            or pa.types.is_boolean(t) or pa.types.is_date(t) or pa.types.is_timestamp(t)
            or pa.types.is_time(t)
            or (pa.types.is_dictionary(t) and has_text(t.value_type)))


def canonical_text(values: Values) -> pa.Array:
    """Each value's canonical text (module docstring), as strings; nulls stay null."""
    arr = _array(values)
    t = arr.type
    if pa.types.is_string(t):
        return arr
    if not has_text(t):
        raise GovernanceError(f"values of type {t} have no canonical text to mask, hash or "
                              "tokenize; drop the column or keep it.")
    if pa.types.is_timestamp(t) or pa.types.is_time(t):  # Arrow writes a space, not a T
        return pa.array([None if v is None else v.isoformat() for v in arr.to_pylist()],
                        pa.string())
    return pc.cast(arr, pa.string())


def _per_distinct(text: pa.Array, fn: Callable[[str], str]) -> pa.Array:
    """``fn`` of each string, computed once per distinct value (keys repeat)."""
    uniq = pc.unique(text)
    out = pa.array([None if v is None else fn(v) for v in uniq.to_pylist()], pa.string())
    return out.take(pc.index_in(text, value_set=uniq))


def _hasher(key: bytes) -> Callable[[str], str]:
    return lambda v: hmac.digest(key, v.encode(), "sha256").hex()


def hash_values(values: Values, key: bytes) -> pa.Array:
    """Keyed HMAC-SHA256 of each value's canonical text, as 64 lower-case hex digits;
    nulls stay null."""
    return _per_distinct(canonical_text(values), _hasher(key))


def _siv(key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

    # 64 bytes: AES-256 in SIV mode (one half authenticates, the other encrypts).
    return AESSIV(hmac.digest(key, _SIV_INFO, "sha512"))


def _tokenizer(key: bytes) -> Callable[[str], str]:
    siv = _siv(key)

    def token(v: str) -> str:
        """``v`` encrypted deterministically, as a token."""
        data = base64.urlsafe_b64encode(siv.encrypt(v.encode(), None)).rstrip(b"=")
        return TOKEN_PREFIX + data.decode()

    return token


def tokenize_values(values: Values, key: bytes) -> pa.Array:
    """Deterministic AES-SIV of each value's canonical text, as ``tok_`` + URL-safe base64
    (no padding); equal values give equal tokens; nulls stay null."""
    return _per_distinct(canonical_text(values), _tokenizer(key))


def detokenize_values(values: Values, key: bytes) -> pa.Array:
    """The canonical text each token of ``tokenize_values`` was made from; GovernanceError
    naming the row for a value that is no token, or a token made with another key."""
    from cryptography.exceptions import InvalidTag

    arr = _array(values)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        raise GovernanceError(f"detokenize takes the strings the tokenize policy wrote, not "
                              f"values of type {arr.type}.")
    siv = _siv(key)
    out: list[str | None] = []
    for row, v in enumerate(arr.to_pylist()):
        if v is None:
            out.append(None)
            continue
        # The value itself is never quoted: a string that is no token may be raw PII.
        if not v.startswith(TOKEN_PREFIX):
            raise GovernanceError(
                f"row {row} is not a token (tokens start with {TOKEN_PREFIX!r}); only values "
                "the tokenize policy wrote can be re-identified.")
        body = v[len(TOKEN_PREFIX):]
        try:
            data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            out.append(siv.decrypt(data, None).decode())
        except (InvalidTag, ValueError, binascii.Error):
            raise GovernanceError(
                f"row {row} looks like a token but does not decrypt with this key: it was "
                "made with another key or was changed. Use the key the table was written "
                "with (the variable governance.key_env names).") from None
    return pa.array(out, pa.string())


# -- mask and generalize -------------------------------------------------------------------

def mask_values(values: Values, keep_last: int = 4, mask_char: str = "*") -> pa.Array:
    """Each value's canonical text with all but its last ``keep_last`` characters replaced
    by ``mask_char``; a value no longer than ``keep_last`` is masked whole."""
    text = canonical_text(values)
    length = pc.utf8_length(text)
    if keep_last <= 0:
        return pc.binary_repeat(pa.scalar(mask_char), length)
    long = pc.greater(length, keep_last)
    count = pc.if_else(long, pc.subtract(length, keep_last), length)
    tail = pc.if_else(long, pc.utf8_slice_codeunits(text, start=-keep_last), pa.scalar(""))
    return pc.binary_join_element_wise(pc.binary_repeat(pa.scalar(mask_char), count), tail,
                                       pa.scalar(""))


def _mask_text(text: str, keep_last: int, mask_char: str) -> str:
    if len(text) <= keep_last:
        return mask_char * len(text)
    return mask_char * (len(text) - keep_last) + (text[-keep_last:] if keep_last else "")


def generalize_values(values: Values, policy: PolicyConfig) -> pa.Array:
    """Dates and timestamps truncated to ``policy.unit`` (their type kept); numbers as the
    lower edge of their bin in ``policy.bins`` (float64; below the first edge: the first
    edge; NaN stays NaN); nulls stay null."""
    arr = _array(values)
    t = arr.type
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        return pc.floor_temporal(arr, unit=policy.unit.value)
    if not _is_number(t) or not policy.bins:
        raise GovernanceError(_problem(t, policy) or f"cannot generalize values of type {t}")
    edges = np.asarray(policy.bins, np.float64)
    x = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 1)
    out = np.where(np.isnan(x), np.nan, edges[idx])
    return pa.array(out, pa.float64(), mask=np.asarray(arr.is_null().to_numpy(
        zero_copy_only=False), bool))


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _generalize_problem(t: pa.DataType) -> str | None:
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        return None
    if _is_number(t):
        return None
    return (f"generalize does not fit column type {t} (it truncates dates and timestamps "
            "and bins numbers): use mask, hash, tokenize or drop")


# -- free text -----------------------------------------------------------------------------

def _default_finder(ner_model: str | None) -> Finder:
    from raylake.pii.recognizers import find

    return lambda values, entities: find(values, entities, ner_model)


def _spans(found: Mapping[str, Matches]) -> dict[int, list[tuple[int, int, str]]]:
    """Row -> its matches of every entity as (start, end, entity), sorted, overlaps merged
    (a merged span keeps the entity of its first match)."""
    parts = [(m.rows, m.starts, m.ends, np.full(len(m), i)) for i, m in
             enumerate(found.values()) if len(m)]
    if not parts:
        return {}
    names = list(found)
    rows, starts, ends, which = (np.concatenate(x) for x in zip(*parts))
    order = np.lexsort((-ends, starts, rows))
    out: dict[int, list[tuple[int, int, str]]] = {}
    for r, s, e, w in zip(rows[order].tolist(), starts[order].tolist(), ends[order].tolist(),
                          which[order].tolist()):
        spans = out.setdefault(r, [])
        if spans and s < spans[-1][1]:  # overlaps the previous span: one span of both
            ps, pe, pw = spans[-1]
            spans[-1] = (ps, max(pe, e), pw)
        else:
            spans.append((s, e, names[w]))
    return out


def _rewrite_matches(values: Values, entities: Sequence[str], finder: Finder,
                     replace: Callable[[str, str], str]) -> pa.Array:
    """``values`` as strings with each match of ``entities`` replaced by
    ``replace(matched text, entity)``; rows without a match are not touched."""
    from raylake.pii.recognizers import as_strings

    arr = as_strings(values)
    if not entities or not len(arr):
        return arr.cast(pa.string())
    spans = _spans(finder(arr, list(entities)))
    if not spans:
        return arr.cast(pa.string())
    rows = np.fromiter(spans, np.int64, len(spans))
    rows.sort()
    texts = arr.take(pa.array(rows)).to_pylist()
    new = []
    for r, text in zip(rows.tolist(), texts):
        pieces, at = [], 0
        for s, e, entity in spans[r]:
            pieces.append(text[at:s])
            pieces.append(replace(text[s:e], entity))
            at = e
        pieces.append(text[at:])
        new.append("".join(pieces))
    mask = np.zeros(len(arr), bool)
    mask[rows] = True
    return pc.replace_with_mask(arr.cast(pa.string()), pa.array(mask), pa.array(new, pa.string()))


def redact_text(values: Values, entities: Sequence[str], *, ner_model: str | None = None,
                finder: Finder | None = None) -> pa.Array:
    """Every match of ``entities`` in ``values`` (cast to strings) replaced by ``<ENTITY>``
    (e.g. ``<EMAIL_ADDRESS>``): raw text that must keep its shape but none of its PII."""
    find = finder or _default_finder(ner_model)
    return _rewrite_matches(values, entities, find, lambda _text, entity: f"<{entity}>")


# -- resolving and checking ----------------------------------------------------------------

def _strictest(policies: Sequence[PolicyConfig]) -> PolicyConfig:
    return max(policies, key=lambda p: STRICTNESS.index(PolicyAction(p.action)))


def resolve_policies(classes: Sequence[ColumnClass], table_policies: Mapping[str, PolicyConfig],
                     global_policies: Mapping[str, PolicyConfig]) -> dict[str, PolicyConfig]:
    """Column -> its policy: the table's own policy for the column, else the strictest
    policy of the entity types found in it, else its class's policy; columns whose policy
    is ``keep`` are left out. GovernanceError for a table policy naming no column."""
    columns = [c.column for c in classes]
    for col in table_policies:
        if col not in columns:
            raise GovernanceError(f"policies.{col}: the table has no column {col!r}; its "
                                  f"columns: {', '.join(columns)}.{did_you_mean(col, columns)}")
    out: dict[str, PolicyConfig] = {}
    for c in classes:
        if c.column in table_policies:
            policy = table_policies[c.column]
        else:
            by_entity = [global_policies[str(e)] for e in c.entities if str(e) in global_policies]
            policy = (_strictest(by_entity) if by_entity
                      else global_policies.get(str(c.data_class), PolicyConfig()))
        if PolicyAction(policy.action) != PolicyAction.keep:
            out[c.column] = policy
    return out


def _problem(t: pa.DataType, policy: PolicyConfig) -> str | None:
    action = PolicyAction(policy.action)
    if action in _TEXT_ACTIONS and not has_text(t):
        return (f"{action.value} does not fit column type {t} (it acts on text, numbers, "
                "dates and times): use drop, or keep the column")
    if action == PolicyAction.generalize:
        problem = _generalize_problem(t)
        if problem:
            return problem
        if _is_number(t) and not policy.bins:
            return (f"generalize of numbers ({t}) needs bins, ascending lower edges (e.g. "
                    "bins: [0, 18, 30, 50, 70])")
    return None


def check_policies(table: str, schema: pa.Schema, policies: Mapping[str, PolicyConfig]) -> None:
    """GovernanceError listing every policy of ``table`` that names no column of ``schema``
    or does not fit its column's type (e.g. generalize on text, numbers without bins)."""
    problems = []
    names = schema.names
    for col, policy in policies.items():
        if col not in names:
            problems.append(f"{col}: no such column{did_you_mean(col, names)}")
            continue
        problem = _problem(schema.field(col).type, policy)
        if problem:
            problems.append(f"{col}: {problem}")
    if problems:
        raise GovernanceError(
            f"The policies of table {table!r} do not fit its columns: {'; '.join(problems)}. "
            "Fix the table's `policies` in the dataset config or governance.policies (or "
            "the column's `classification`); nothing was read or written.")


def output_schema(schema: pa.Schema, policies: Mapping[str, PolicyConfig]) -> pa.Schema:
    """``schema`` once ``policies`` ran: masked, hashed and tokenized columns are strings,
    dropped ones gone, generalized numbers float64 (dates and timestamps keep their type)."""
    fields = []
    for f in schema:
        policy = policies.get(f.name)
        action = PolicyAction.keep if policy is None else PolicyAction(policy.action)
        if action == PolicyAction.drop:
            continue
        if action in _TEXT_ACTIONS:
            f = f.with_type(pa.string())
        elif action == PolicyAction.generalize and _is_number(f.type):
            f = f.with_type(pa.float64())
        fields.append(f)
    return pa.schema(fields, metadata=schema.metadata)


# -- applying ------------------------------------------------------------------------------

def _whole(values: Values, policy: PolicyConfig, key: bytes | None) -> pa.Array:
    action = PolicyAction(policy.action)
    if action == PolicyAction.mask:
        return mask_values(values, policy.keep_last, policy.mask_char)
    if action == PolicyAction.generalize:
        return generalize_values(values, policy)
    assert key is not None
    if action == PolicyAction.hash:
        return hash_values(values, key)
    return tokenize_values(values, key)


def _in_text(values: Values, policy: PolicyConfig, key: bytes | None,
             entities: Sequence[str], finder: Finder) -> pa.Array:
    action = PolicyAction(policy.action)
    if action == PolicyAction.mask:
        keep, char = policy.keep_last, policy.mask_char
        return _rewrite_matches(values, entities, finder,
                                lambda text, _e: _mask_text(text, keep, char))
    assert key is not None
    fn = _hasher(key) if action == PolicyAction.hash else _tokenizer(key)
    return _rewrite_matches(values, entities, finder, lambda text, _e: fn(text))


def apply_policies(table: pa.Table, policies: Mapping[str, PolicyConfig], key: bytes | None,
                   classes: Mapping[str, ColumnClass], *, ner_model: str | None = None,
                   finder: Finder | None = None) -> pa.Table:
    """``table`` with each column's policy applied (schema: ``output_schema``). Whole-value
    columns: the action on each value; free-text columns (``classes[col].whole`` False)
    under mask, hash or tokenize: on each match of the entity types found in the column
    (``finder``: raylake.pii.recognizers.find with ``ner_model``). GovernanceError when
    hash or tokenize has no key, or a policy names a column the table lacks."""
    find = finder or _default_finder(ner_model)
    out = table
    for col, policy in policies.items():
        action = PolicyAction(policy.action)
        if action == PolicyAction.keep:
            continue
        i = out.schema.get_field_index(col)
        if i < 0:
            raise GovernanceError(f"policy {action.value} names column {col!r}, which the "
                                  f"rows do not have; columns: {', '.join(out.column_names)}.")
        if action == PolicyAction.drop:
            out = out.remove_column(i)
            continue
        if policy.needs_key and key is None:
            raise GovernanceError(f"{col}: the {action.value} policy needs the key; set the "
                                  "environment variable governance.key_env names "
                                  "(RAYLAKE_GOVERNANCE_KEY by default).")
        field = out.schema.field(i)
        c = classes.get(col)
        if c is not None and not c.whole and c.entities and action in _TEXT_ACTIONS:
            new = _in_text(out.column(i), policy, key, [str(e) for e in c.entities], find)
        else:
            new = _whole(out.column(i), policy, key)
        out = out.set_column(i, pa.field(col, new.type, field.nullable, field.metadata), new)
    return out
