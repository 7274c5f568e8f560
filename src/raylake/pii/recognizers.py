"""Pattern recognizers for PII in Arrow columns of strings (Presidio's entity names).

A recognizer is three steps, each cheaper per row than the next and each run only on what
the previous one kept:

1. ``prefilter``: an RE2 pattern that ``pyarrow.compute.match_substring_regex`` runs over the
   whole column in C++; it is the recognizer's pattern without look-arounds (RE2 has none),
   so it may keep rows the pattern refuses but never drops one it would match;
2. ``pattern``: a Python regex whose ``finditer`` runs on the candidate rows only; its
   look-arounds refuse a match glued to more digits (a phone number inside a longer digit
   run, an SSN inside a card number);
3. ``validate``: the checksums of raylake.pii.checksums, vectorised over the candidates.

A new entity is one ``Recognizer`` subclass added to ``RECOGNIZERS``. PERSON and LOCATION
need a statistical model: raylake.pii.ner, used when ``ner_model`` is given.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raylake.config.governance import Entity
from raylake.errors import GovernanceError, did_you_mean
from raylake.pii import checksums
from raylake.pii.types import Matches

Strings: TypeAlias = "pa.Array | pa.ChunkedArray"


class Recognizer:
    """One entity type found by a pattern and checked by ``validate``."""

    entity: str
    prefilter: str  # RE2, for pyarrow's match_substring_regex
    pattern: re.Pattern[str]  # Python re, for finditer on candidate rows
    # Entities whose shape hides this one where they overlap: the digit groups of an
    # IBAN-shaped account number are not a card or a phone number, whether or not the
    # IBAN's own check passes (a mistyped IBAN is still not a card).
    shadowed_by: tuple[str, ...] = ()

    def validate(self, found: list[str]) -> np.ndarray:
        """Which candidates (the text each pattern match covers) are the entity."""
        return np.ones(len(found), bool)

    def keep(self, found: list[str]) -> np.ndarray:
        """How many characters at the start of each candidate are the entity; 0: none.
        The whole candidate when it validates; a recognizer may keep a prefix instead."""
        lengths = np.fromiter((len(f) for f in found), np.int64, len(found))
        return np.where(self.validate(found), lengths, 0)


_SEPARATORS = str.maketrans("", "", " .-()+")


def _digits(found: list[str]) -> list[str]:
    """The digits of number-like matches (the patterns allow only these separators)."""
    return [f.translate(_SEPARATORS) for f in found]


# Start and end guards shared by the digit patterns: no digit, and no digit followed by
# one separator, on either side (so a match is never a piece of a longer number).
_NOT_AFTER_DIGITS = r"(?<![\w+])(?<!\d[ .-])"
_NOT_BEFORE_DIGITS = r"(?!\w)(?![ .-]\d)"


class EmailRecognizer(Recognizer):
    """RFC 5322's common subset (dot-atom local part) at a domain with a known top-level
    domain: any two-letter country code or a common generic one, so ``icon@2x.png`` and
    ``user@localhost`` are not addresses."""

    entity = Entity.EMAIL_ADDRESS.value
    prefilter = r"[A-Za-z0-9._%+-]@[A-Za-z0-9-]+\.[A-Za-z0-9.-]*[A-Za-z]{2}"
    pattern = re.compile(
        r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@"
        r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])")
    TLDS = frozenset("""
        com net org edu gov mil int info biz name pro mobi asia aero coop museum jobs travel
        io ai app dev tech online site store shop blog cloud xyz top club live email digital
        agency solutions services company global world today media news network systems
        group center inc ltd llc co academy family health law bank insurance""".split())

    def validate(self, found: list[str]) -> np.ndarray:
        """The TLD is known; the local part has no empty dot-atom."""
        out = np.zeros(len(found), bool)
        for i, f in enumerate(found):
            local, _, domain = f.rpartition("@")
            tld = domain.rsplit(".", 1)[-1].lower()
            out[i] = ((len(tld) == 2 or tld in self.TLDS) and ".." not in local
                      and not local.endswith(".") and len(local) <= 64)
        return out


class PhoneRecognizer(Recognizer):
    """North American numbers (``(212) 555-0143``, ``212-555-0143``, ``212.555.0143``,
    ``+1 212 555 0143``, ``2125550143``) with the NANP rules (area code and exchange do
    not start with 0 or 1), and international numbers written with ``+`` and a country
    code (``+44 20 7946 0958``): 10 to 15 digits in all."""

    entity = Entity.PHONE_NUMBER.value
    shadowed_by = (Entity.IBAN_CODE.value,)
    prefilter = (r"\d{3}[ .-]\d{4}|\d{10}|\+\d{1,3}[ .-]?\(?\d")
    pattern = re.compile(
        _NOT_AFTER_DIGITS + r"(?:"
        # North America, separated: optional +1 / 1, area code, exchange, line.
        r"(?:\+?1[ .-]?)?(?:\(\d{3}\)[ ]?|\d{3}[ .-])\d{3}[ .-]\d{4}"
        # North America, unseparated.
        r"|(?:\+1)?\d{10}"
        # International: +country code, then groups of digits with single separators.
        r"|\+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,4})){2,6}"
        r")" + _NOT_BEFORE_DIGITS)

    def validate(self, found: list[str]) -> np.ndarray:
        """10-15 digits; NANP rules where the number is North American."""
        digits = _digits(found)
        out = np.zeros(len(found), bool)
        for i, (f, d) in enumerate(zip(found, digits)):
            if f.startswith("+") and not f.startswith("+1"):
                out[i] = 10 <= len(d) <= 15 and d[0] != "0"
                continue
            if len(d) == 11 and d[0] == "1":
                d = d[1:]
            out[i] = len(d) == 10 and d[0] not in "01" and d[3] not in "01"
        return out


class CreditCardRecognizer(Recognizer):
    """13-19 digits, optionally in groups split by single spaces or dashes, with a known
    issuer prefix and length and the Luhn check (checksums.card_number_valid)."""

    entity = Entity.CREDIT_CARD.value
    shadowed_by = (Entity.IBAN_CODE.value,)
    prefilter = r"\d(?:[ -]?\d){12}"
    pattern = re.compile(_NOT_AFTER_DIGITS + r"\d(?:[ -]?\d){12,18}" + _NOT_BEFORE_DIGITS)

    def validate(self, found: list[str]) -> np.ndarray:
        """Issuer prefix and length, and Luhn."""
        return checksums.card_number_valid(_digits(found))


class IbanRecognizer(Recognizer):
    """Country code, two check digits and the account, compact or in groups of four
    (``DE89 3704 0044 0532 0130 00``), with the country's length and mod 97
    (checksums.iban_valid)."""

    entity = Entity.IBAN_CODE.value
    prefilter = r"[A-Z]{2}\d{2} ?[A-Z0-9]{4}"
    pattern = re.compile(
        r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}"
        r"(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)(?![A-Za-z0-9])")

    def keep(self, found: list[str]) -> np.ndarray:
        """The country's length of characters (spaces aside) when that prefix is a valid
        IBAN and ends at a group boundary: a grouped IBAN followed by an upper-case word
        (``... 3000 THEN``) keeps the IBAN."""
        compact = [f.replace(" ", "") for f in found]
        want = [checksums.IBAN_LENGTHS.get(c[:2], 0) for c in compact]
        heads = [c[:n] for c, n in zip(compact, want)]
        ok = checksums.iban_valid(heads)
        out = np.zeros(len(found), np.int64)
        for i in np.flatnonzero(ok):
            f = found[i]
            end = [j for j, ch in enumerate(f) if ch != " "][want[i] - 1] + 1
            if end == len(f) or f[end] == " ":
                out[i] = end
        return out


class IpRecognizer(Recognizer):
    """IPv4 dotted quads with each octet 0-255 (not ``300.1.2.3``, not the version
    ``1.2.3.4567``, not the five-part ``1.2.3.4.5``) and IPv6 addresses Python's ipaddress
    parses (not times such as ``12:30:45`` or MAC addresses)."""

    entity = Entity.IP_ADDRESS.value
    prefilter = r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:"
    pattern = re.compile(
        r"(?<![\w:.])(?:"
        r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?(?![\w:])"
        r"|\d{1,3}(?:\.\d{1,3}){3}(?!\w)(?!\.\d)"
        r")")

    def validate(self, found: list[str]) -> np.ndarray:
        """Octets in range for IPv4, ipaddress's parse for IPv6."""
        out = np.zeros(len(found), bool)
        v6 = np.array([":" in f for f in found], bool)
        i4, i6 = np.flatnonzero(~v6), np.flatnonzero(v6)
        out[i4] = checksums.ipv4_valid([found[i] for i in i4])
        out[i6] = checksums.ipv6_valid([found[i] for i in i6])
        return out


class SsnRecognizer(Recognizer):
    """``123-45-6789`` or ``123 45 6789`` (one separator, used twice) with the SSA's rules
    (checksums.ssn_valid). Nine bare digits are not taken: too many ids look like that."""

    entity = Entity.US_SSN.value
    shadowed_by = (Entity.IBAN_CODE.value,)
    prefilter = r"\d{3}[ -]\d{2}[ -]\d{4}"
    pattern = re.compile(_NOT_AFTER_DIGITS + r"\d{3}([ -])\d{2}\1\d{4}" + _NOT_BEFORE_DIGITS)

    def validate(self, found: list[str]) -> np.ndarray:
        """The SSA's area, group and serial rules."""
        return checksums.ssn_valid(_digits(found))


RECOGNIZERS: dict[str, Recognizer] = {
    r.entity: r for r in (EmailRecognizer(), PhoneRecognizer(), CreditCardRecognizer(),
                          IbanRecognizer(), IpRecognizer(), SsnRecognizer())}
NER_ENTITIES = (Entity.PERSON.value, Entity.LOCATION.value)


def as_strings(values: Strings) -> pa.Array:
    """One Arrow array of strings: chunks combined, other types cast (numbers, dates);
    a type with no text form (lists, structs) is refused."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return arr
    if pa.types.is_string_view(arr.type) or pa.types.is_dictionary(arr.type):
        return pc.cast(arr, pa.large_string())
    try:
        return pc.cast(arr, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise GovernanceError(f"values of type {arr.type} have no text form to scan for PII; "
                              "scan string, number or date columns, or classify this column "
                              "in the dataset config (`classification`).") from exc


def recognizer(entity: str) -> Recognizer:
    """The pattern recognizer of ``entity``."""
    try:
        return RECOGNIZERS[str(entity)]
    except KeyError:
        known = [*RECOGNIZERS, *NER_ENTITIES]
        raise GovernanceError(f"no recognizer for entity {entity!r}; use one of "
                              f"{', '.join(known)}.{did_you_mean(str(entity), known)}") from None


def find(values: Strings, entities: Sequence[str],
         ner_model: str | None = None) -> dict[str, Matches]:
    """Every match of each entity in ``values`` (cast to strings), checksums applied.
    PERSON and LOCATION need ``ner_model`` (a spaCy model the user installed)."""
    arr = as_strings(values)
    wanted = [str(e) for e in entities]
    found: dict[str, Matches] = {}
    shapes: dict[str, tuple[np.ndarray, Matches]] = {}
    ner = [e for e in wanted if e in NER_ENTITIES]
    if ner:
        if ner_model is None:
            raise GovernanceError(
                f"{', '.join(ner)} need a named-entity model, not a pattern: set "
                "governance.scan.ner_model to a spaCy model you installed (e.g. "
                "en_core_web_sm); without one they are not detected.")
        from raylake.pii.ner import find_entities

        found.update(find_entities(arr, ner, str(ner_model)))
    for entity in wanted:
        if entity not in found:
            found[entity] = _find_one(arr, recognizer(entity), shapes)
    return {e: found[e] for e in wanted}


def whole_match(values: Strings, entity: str, ner_model: str | None = None) -> np.ndarray:
    """Per value: True where the value (surrounding whitespace aside) is one match of
    ``entity``; False for nulls."""
    arr = as_strings(values)
    return whole_rows(arr, find(arr, [entity], ner_model)[str(entity)])


def whole_rows(arr: pa.Array, matches: Matches) -> np.ndarray:
    """Rows of ``arr`` that one of ``matches`` covers entirely (whitespace aside)."""
    out = np.zeros(len(arr), bool)
    if not len(matches):
        return out
    length = pc.utf8_length(arr).to_numpy(zero_copy_only=False)
    left = length - pc.utf8_length(pc.utf8_ltrim_whitespace(arr)).to_numpy(zero_copy_only=False)
    right = length - pc.utf8_length(pc.utf8_rtrim_whitespace(arr)).to_numpy(zero_copy_only=False)
    rows = matches.rows
    covers = (matches.starts == left[rows]) & (matches.ends == length[rows] - right[rows])
    out[rows[covers]] = True
    return out


def _candidate_rows(arr: pa.Array, rec: Recognizer) -> np.ndarray:
    hit = pc.match_substring_regex(arr, rec.prefilter)
    return np.flatnonzero(hit.fill_null(False).to_numpy(zero_copy_only=False))


def _find_one(arr: pa.Array, rec: Recognizer, shapes: dict[str, tuple[np.ndarray, Matches]],
              rows: np.ndarray | None = None, check: bool = True) -> Matches:
    """Matches of one recognizer; ``rows`` limits the search; ``check=False``: the
    pattern's matches, unvalidated (shapes that hide other entities)."""
    cand = _candidate_rows(arr if rows is None else arr.take(pa.array(rows)), rec)
    if rows is not None:
        cand = rows[cand]
    if not cand.size:
        return Matches.empty()
    texts = arr.take(pa.array(cand)).to_pylist()
    finditer = rec.pattern.finditer
    hits = [(row, m.start(), m.group())
            for row, text in zip(cand.tolist(), texts) for m in finditer(text)]
    if not hits:
        return Matches.empty()
    mrows, starts, found_ = zip(*hits)
    found = list(found_)
    keep = rec.keep(found) if check else np.fromiter(map(len, found), np.int64, len(found))
    sel = keep > 0
    out = Matches(np.asarray(mrows, np.int64)[sel], np.asarray(starts, np.int64)[sel],
                  (np.asarray(starts, np.int64) + keep)[sel])
    for other in rec.shadowed_by if check else ():
        out = _drop_overlaps(out, _shapes(arr, other, out.rows, shapes))
    return out


def _shapes(arr: pa.Array, entity: str, rows: np.ndarray,
            cache_: dict[str, tuple[np.ndarray, Matches]]) -> Matches:
    """Where ``entity``'s pattern matches in ``rows``, unchecked; each row is searched
    once per ``find`` call."""
    rows = np.unique(rows)
    covered, have = cache_.get(entity, (np.zeros(0, np.int64), Matches.empty()))
    todo = np.setdiff1d(rows, covered)
    if todo.size:
        more = _find_one(arr, RECOGNIZERS[entity], cache_, todo, check=False)
        have = Matches(*(np.concatenate([a, b]) for a, b in
                         ((have.rows, more.rows), (have.starts, more.starts),
                          (have.ends, more.ends))))
        cache_[entity] = (np.union1d(covered, todo), have)
    sel = np.isin(have.rows, rows)
    return Matches(have.rows[sel], have.starts[sel], have.ends[sel])


def _drop_overlaps(m: Matches, shadow: Matches) -> Matches:
    if not len(m) or not len(shadow):
        return m
    spans: dict[int, list[tuple[int, int]]] = {}
    for r, s, e in zip(shadow.rows.tolist(), shadow.starts.tolist(), shadow.ends.tolist()):
        spans.setdefault(r, []).append((s, e))
    keep = np.array([not any(s < e2 and s2 < e for s2, e2 in spans.get(r, ()))
                     for r, s, e in zip(m.rows.tolist(), m.starts.tolist(), m.ends.tolist())],
                    bool)
    return Matches(m.rows[keep], m.starts[keep], m.ends[keep])

