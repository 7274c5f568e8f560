"""Policies on real Arrow data, without Ray: the key from the environment, keyed hashes and
reversible tokens, masks, generalization, which policy a column gets, what does not fit,
and policies on free text acting on each match the recognizers find."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import numpy as np
import pyarrow as pa
import pytest

from raylake.config.governance import PolicyConfig
from raylake.errors import GovernanceError
from raylake.pii.policies import (
    apply_policies,
    canonical_text,
    check_policies,
    detokenize_values,
    generalize_values,
    hash_values,
    key_from_env,
    mask_values,
    output_schema,
    redact_text,
    resolve_policies,
    tokenize_values,
)
from raylake.pii.types import ColumnClass, Matches

KEY = b"0123456789abcdef-policy-tests"
OTHER = b"another-key-of-enough-bytes"


def hmac_hex(text: str, key: bytes = KEY) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def policy(action: str, **kw) -> PolicyConfig:
    return PolicyConfig(action=action, **kw)


# -- the key ---------------------------------------------------------------------------------

def test_key_comes_from_the_named_variable(monkeypatch):
    monkeypatch.setenv("GOV_KEY_TEST", "s" * 16)
    assert key_from_env("GOV_KEY_TEST") == b"s" * 16


def test_missing_key_names_the_variable_and_how_to_set_it(monkeypatch):
    monkeypatch.delenv("GOV_KEY_TEST", raising=False)
    with pytest.raises(GovernanceError) as err:
        key_from_env("GOV_KEY_TEST")
    assert "GOV_KEY_TEST" in str(err.value) and "export GOV_KEY_TEST=" in str(err.value)


def test_short_key_is_refused_without_showing_it(monkeypatch):
    monkeypatch.setenv("GOV_KEY_TEST", "hunter2secret")  # 13 bytes
    with pytest.raises(GovernanceError) as err:
        key_from_env("GOV_KEY_TEST")
    assert "13 bytes" in str(err.value) and "at least 16" in str(err.value)
    assert "hunter2" not in str(err.value)


# -- hash and tokens -------------------------------------------------------------------------

def test_hash_is_the_keyed_hmac_of_the_canonical_text():
    got = hash_values(pa.array(["alice@example.com", None, "alice@example.com", "bob"]), KEY)
    assert got.to_pylist() == [hmac_hex("alice@example.com"), None,
                               hmac_hex("alice@example.com"), hmac_hex("bob")]
    assert hash_values(pa.array(["bob"]), OTHER).to_pylist() != [hmac_hex("bob")]
    # Canonical text: ints in decimal, dates and timestamps as isoformat().
    assert hash_values(pa.array([42, -7]), KEY).to_pylist() == [hmac_hex("42"), hmac_hex("-7")]
    day = dt.date(2024, 2, 29)
    assert hash_values(pa.array([day]), KEY).to_pylist() == [hmac_hex(day.isoformat())]
    when = dt.datetime(2024, 2, 29, 13, 5, 9, 120, tzinfo=dt.timezone.utc)
    ts = pa.array([when], pa.timestamp("us", tz="UTC"))
    assert canonical_text(ts).to_pylist() == [when.isoformat()]
    assert hash_values(ts, KEY).to_pylist() == [hmac_hex(when.isoformat())]
    # A chunked column and a dictionary column hash as their plain strings do.
    chunked = pa.chunked_array([["a", "b"], ["a"]])
    assert hash_values(chunked, KEY).to_pylist() == [hmac_hex("a"), hmac_hex("b"), hmac_hex("a")]
    assert hash_values(pa.array(["a", "b"]).dictionary_encode(), KEY).to_pylist() == [
        hmac_hex("a"), hmac_hex("b")]


def test_tokens_are_deterministic_and_reversible_with_the_key_only():
    values = pa.array(["alice@example.com", "bob@example.com", None, "alice@example.com", "é"])
    tokens = tokenize_values(values, KEY).to_pylist()
    assert all(t.startswith("tok_") for t in tokens if t is not None) and tokens[2] is None
    assert tokens[0] == tokens[3] and tokens[0] != tokens[1]
    assert all(set(t[4:]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                 "0123456789-_") for t in tokens if t)
    assert "alice" not in "".join(t for t in tokens if t)
    assert detokenize_values(pa.array(tokens), KEY).to_pylist() == values.to_pylist()
    assert tokenize_values(pa.array([42]), KEY).to_pylist() != tokens[:1]
    assert detokenize_values(tokenize_values(pa.array([42]), KEY), KEY).to_pylist() == ["42"]
    # Another key: a different token, and this key's tokens do not decrypt with it.
    assert tokenize_values(values, OTHER).to_pylist()[0] != tokens[0]
    with pytest.raises(GovernanceError, match="row 0 looks like a token but does not decrypt"):
        detokenize_values(pa.array([tokens[0]]), OTHER)


def test_detokenize_refuses_what_is_no_token_without_quoting_it():
    with pytest.raises(GovernanceError) as err:
        detokenize_values(pa.array([None, "alice@example.com"]), KEY)
    assert "row 1 is not a token" in str(err.value) and "alice" not in str(err.value)
    with pytest.raises(GovernanceError, match="row 0 looks like a token"):
        detokenize_values(pa.array(["tok_not-base64-or-ours"]), KEY)
    with pytest.raises(GovernanceError, match="not values of type int64"):
        detokenize_values(pa.array([1]), KEY)


# -- mask and generalize ---------------------------------------------------------------------

def test_mask_keeps_the_last_characters():
    got = mask_values(pa.array(["4111111111111111", "abcd", "ab", "", None, "héllo wörld"]), 4)
    assert got.to_pylist() == ["************1111", "****", "**", "", None, "*******örld"]
    assert mask_values(pa.array(["secret"]), 0, "#").to_pylist() == ["######"]
    assert mask_values(pa.array([5551234567]), 4).to_pylist() == ["******4567"]


def test_generalize_dates_to_a_unit_and_numbers_to_bins():
    days = pa.array([dt.date(2021, 7, 19), None])
    assert generalize_values(days, policy("generalize", unit="month")).to_pylist() == [
        dt.date(2021, 7, 1), None]
    ts = pa.array([dt.datetime(2021, 7, 19, 8, 30, tzinfo=dt.timezone.utc)],
                  pa.timestamp("us", tz="UTC"))
    got = generalize_values(ts, policy("generalize", unit="year"))
    assert got.type == ts.type
    assert got.to_pylist() == [dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc)]
    ages = pa.array([3, 18, 29, 30, 90, None, -1])
    got = generalize_values(ages, policy("generalize", bins=[0, 18, 30, 65]))
    assert got.type == pa.float64()
    assert got.to_pylist() == [0.0, 18.0, 18.0, 30.0, 65.0, None, 0.0]
    floats = generalize_values(pa.array([1.5, float("nan")]), policy("generalize", bins=[0, 1]))
    assert floats[0].as_py() == 1.0 and np.isnan(floats[1].as_py())


# -- which policy, and what fits -------------------------------------------------------------

def test_precedence_is_table_column_then_entity_type_then_class():
    classes = [
        ColumnClass("card", "restricted", {"CREDIT_CARD": 1.0}, whole=True),
        ColumnClass("iban", "restricted", {"IBAN_CODE": 1.0}, whole=True),
        ColumnClass("email", "pii", {"EMAIL_ADDRESS": 1.0}, whole=True),
        ColumnClass("note", "restricted", {"EMAIL_ADDRESS": 0.2, "US_SSN": 0.1}),
        ColumnClass("ssn", "restricted", {"US_SSN": 1.0}, whole=True),
        ColumnClass("amount", "internal"),
    ]
    glob = {"restricted": policy("hash"), "CREDIT_CARD": policy("mask"),
            "EMAIL_ADDRESS": policy("mask"), "US_SSN": policy("drop"), "internal": policy("keep")}
    table = {"email": policy("tokenize"), "ssn": policy("keep")}
    got = {c: p.action.value for c, p in resolve_policies(classes, table, glob).items()}
    assert got == {
        "card": "mask",  # its entity type's policy wins over its class's
        "iban": "hash",  # no policy for IBAN_CODE: the class's
        "email": "tokenize",  # the table's own policy wins over the entity type's
        "note": "drop",  # free text: the strictest of its entity types' policies
    }  # ssn: the table keeps it; amount: keep; both left out


def test_a_policy_for_no_column_is_refused():
    with pytest.raises(GovernanceError, match=r"policies.emial: the table has no column "
                                              r"'emial'.*Did you mean 'email'"):
        resolve_policies([ColumnClass("email", "pii")], {"emial": policy("hash")}, {})


def test_policies_that_do_not_fit_their_columns_are_all_named():
    schema = pa.schema([("name", pa.string()), ("age", pa.int32()), ("tags", pa.list_(pa.string())),
                        ("born", pa.date32()), ("score", pa.float64())])
    check_policies("people", schema, {"born": policy("generalize"), "name": policy("mask"),
                                      "score": policy("generalize", bins=[0, 0.5])})
    with pytest.raises(GovernanceError) as err:
        check_policies("people", schema, {"name": policy("generalize"),
                                          "age": policy("generalize"),
                                          "tags": policy("hash"), "nmae": policy("drop")})
    text = str(err.value)
    assert "table 'people'" in text
    assert "name: generalize does not fit column type string" in text
    assert "age: generalize of numbers (int32) needs bins" in text
    assert "tags: hash does not fit column type list<item: string>" in text
    assert "nmae: no such column" in text and "Did you mean 'name'" in text


def test_output_schema_says_what_the_policies_make():
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), ("card", pa.string()),
                        ("phone", pa.int64()), ("born", pa.date32()), ("age", pa.int32()),
                        ("ssn", pa.string()), ("note", pa.string())])
    pols = {"card": policy("hash"), "phone": policy("mask"), "born": policy("generalize"),
            "age": policy("generalize", bins=[0, 18]), "ssn": policy("drop"),
            "note": policy("tokenize"), "id": policy("keep")}
    out = output_schema(schema, pols)
    assert out == pa.schema([pa.field("id", pa.int64(), nullable=False), ("card", pa.string()),
                             ("phone", pa.string()), ("born", pa.date32()),
                             ("age", pa.float64()), ("note", pa.string())])


# -- applying --------------------------------------------------------------------------------

def luhn(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def people(n: int = 50) -> pa.Table:
    cards = [luhn(f"4{i:014d}") for i in range(n)]
    return pa.table({
        "id": pa.array(range(n), pa.int64()),
        "email": [f"user{i}@example.com" for i in range(n)],
        "card": cards,
        "born": pa.array([dt.date(1960 + i % 40, 1 + i % 12, 1 + i % 28) for i in range(n)]),
        "age": pa.array([i % 90 for i in range(n)], pa.int32()),
        "note": [f"reach me at user{i}@example.com, card {cards[i]}." if i % 3 == 0
                 else "no contact" for i in range(n)],
    })


CLASSES = {
    "email": ColumnClass("email", "pii", {"EMAIL_ADDRESS": 1.0}, whole=True),
    "card": ColumnClass("card", "restricted", {"CREDIT_CARD": 1.0}, whole=True),
    "note": ColumnClass("note", "restricted", {"EMAIL_ADDRESS": 0.34, "CREDIT_CARD": 0.34}),
}


def test_apply_on_whole_values_and_free_text():
    rows = people()
    pols = {"email": policy("tokenize"), "card": policy("hash"), "note": policy("mask"),
            "born": policy("generalize", unit="year"), "age": policy("generalize", bins=[0, 30, 60]),
            "id": policy("keep")}
    out = apply_policies(rows, pols, KEY, CLASSES)
    assert out.schema == output_schema(rows.schema, pols)
    src, got = rows.to_pylist(), out.to_pylist()
    for a, b in zip(src, got):
        assert b["id"] == a["id"]
        assert b["card"] == hmac_hex(a["card"])
        assert b["email"].startswith("tok_")
        assert b["born"] == dt.date(a["born"].year, 1, 1)
        assert b["age"] == {0: 0.0, 1: 30.0, 2: 60.0}[min(a["age"] // 30, 2)]
    assert detokenize_values(out["email"], KEY).to_pylist() == rows["email"].to_pylist()
    # Free text: each email and card number masked in place, the rest of the text kept.
    first = got[0]["note"]
    assert first.startswith("reach me at ") and ", card " in first and first.endswith(".")
    assert "user0@" not in first and ".com" in first and src[0]["card"][-4:] in first
    assert src[0]["card"] not in first
    assert got[1]["note"] == "no contact"
    everything = str(got)
    assert not any(r["email"] in everything or r["card"] in everything for r in src)


def test_hash_and_tokenize_in_free_text_replace_each_match():
    rows = people(6)
    out = apply_policies(rows.select(["note"]), {"note": policy("hash")}, KEY, CLASSES)
    assert out["note"][0].as_py() == (f"reach me at {hmac_hex('user0@example.com')}, card "
                                      f"{hmac_hex(rows['card'][0].as_py())}.")
    tok = apply_policies(rows.select(["note"]), {"note": policy("tokenize")}, KEY, CLASSES)
    words = tok["note"][3].as_py().replace(",", "").rstrip(".").split()
    assert detokenize_values(pa.array([words[3]]), KEY).to_pylist() == ["user3@example.com"]


def test_drop_and_a_missing_key():
    rows = people(4)
    out = apply_policies(rows, {"card": policy("drop"), "note": policy("drop")}, None, CLASSES)
    assert out.column_names == ["id", "email", "born", "age"]
    with pytest.raises(GovernanceError, match="card: the hash policy needs the key"):
        apply_policies(rows, {"card": policy("hash")}, None, CLASSES)
    with pytest.raises(GovernanceError, match="column 'cardd'"):
        apply_policies(rows, {"cardd": policy("mask")}, None, CLASSES)


def test_free_text_matches_come_from_the_finder():
    # A stub recognizer: "XX" marks PII, and two overlapping matches become one span.
    def finder(values, entities):
        rows, starts, ends = [], [], []
        for r, text in enumerate(values.to_pylist()):
            at = (text or "").find("XXXX")
            if at >= 0:
                rows += [r, r]
                starts += [at, at + 2]
                ends += [at + 4, at + 6]
        arr = [np.asarray(x, np.int64) for x in (rows, starts, ends)]
        return {e: Matches(*arr) if i == 0 else Matches.empty() for i, e in enumerate(entities)}

    table = pa.table({"t": ["a XXXXYY b", "none", None]})
    cls = {"t": ColumnClass("t", "pii", {"PHONE_NUMBER": 0.5, "EMAIL_ADDRESS": 0.1})}
    out = apply_policies(table, {"t": policy("mask", keep_last=1)}, None, cls, finder=finder)
    assert out["t"].to_pylist() == ["a *****Y b", "none", None]
    red = redact_text(table["t"], ["PHONE_NUMBER", "EMAIL_ADDRESS"], finder=finder)
    assert red.to_pylist() == ["a <PHONE_NUMBER> b", "none", None]


def test_redact_text_with_the_recognizers():
    card = luhn("411111111111111")
    raw = pa.array([f"id=7 email=jo@example.org card={card}", "order 4111111111111112", None])
    got = redact_text(raw, ["EMAIL_ADDRESS", "CREDIT_CARD"]).to_pylist()
    assert got == ["id=7 email=<EMAIL_ADDRESS> card=<CREDIT_CARD>",
                   "order 4111111111111112",  # fails Luhn: not a card, left alone
                   None]
