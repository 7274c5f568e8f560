"""PII detection (raylake.pii): the checksums, each recognizer on real values and on
decoys of the same shape, exact spans, whole-value matches, column classification and the
optional NER recognizer's error path (spaCy is not installed here; a stand-in module
checks the span mapping). No Ray.
"""

from __future__ import annotations

import re
import sys
import types

import numpy as np
import pyarrow as pa
import pytest

from raylake.config.governance import ScanConfig
from raylake.errors import GovernanceError
from raylake.pii import checksums, ner
from raylake.pii.classify import classify_table, sample_rows, scanned_entities
from raylake.pii.recognizers import RECOGNIZERS, Recognizer, find, whole_match


def spans(values: list[str | None], entity: str) -> list[tuple[int, str]]:
    """(row, matched text) of every match of ``entity``."""
    m = find(pa.array(values, pa.string()), [entity])[entity]
    return [(int(r), values[int(r)][int(s):int(e)])  # type: ignore[index]
            for r, s, e in zip(m.rows, m.starts, m.ends)]


def with_luhn(body: str) -> str:
    """``body`` with its Luhn check digit appended."""
    for d in "0123456789":
        if checksums.luhn_valid([body + d])[0]:
            return body + d
    raise AssertionError(body)


# ---- checksums --------------------------------------------------------------------------

def test_luhn():
    good = ["4111111111111111", "378282246310005", "5555555555554444", "6011111111111117",
            "79927398713"]
    bad = ["4111111111111112", "378282246310006", "79927398710", "", "4111x11111111111"]
    assert checksums.luhn_valid(good).tolist() == [True] * len(good)
    assert checksums.luhn_valid(bad).tolist() == [False] * len(bad)


def test_card_numbers_need_an_issuer_prefix_and_length():
    assert checksums.card_number_valid(["4111111111111111", "378282246310005",
                                        "5555555555554444", "3530111333300000",
                                        "6011000990139424", "4222222222222"]).all()
    # Luhn-valid, but no issuer starts with 1 or 9 (ISBNs, account numbers), a Visa has
    # no 15-digit numbers, an Amex no 16-digit ones, and 12 digits is too short.
    decoys = [with_luhn("1234567890123"), with_luhn("978030640615"), with_luhn("41111111111111"),
              with_luhn("371111111111111"), with_luhn("41111111111")]
    assert checksums.luhn_valid(decoys).all()
    assert not checksums.card_number_valid(decoys).any()


def test_iban_mod97_and_country_lengths():
    good = ["DE89370400440532013000", "GB82WEST12345698765432", "NL91ABNA0417164300",
            "BE68539007547034", "FR1420041010050500013M02606", "NO9386011117947",
            "CH9300762011623852957"]
    assert checksums.iban_valid(good).tolist() == [True] * len(good)
    bad = ["DE88370400440532013000",  # check digits
           "DE89370400440532013001",  # one account digit
           "DE893704004405320130000",  # the country's length is 22
           "QQ89370400440532013000",  # no such country
           "de89370400440532013000",  # lower case
           "GB82WEST1234569876543"]   # short
    assert checksums.iban_valid(bad).tolist() == [False] * len(bad)
    assert checksums.iban_valid([]).shape == (0,)


def test_ssn_rules():
    assert checksums.ssn_valid(["536221234", "001010001", "899999999"]).all()
    bad = ["000221234", "666221234", "900221234", "999221234", "536001234", "536220000",
           "078051120", "53622123", "53622123x"]
    assert not checksums.ssn_valid(bad).any()


def test_ip_ranges_and_parse():
    assert checksums.ipv4_valid(["192.168.1.10", "0.0.0.0", "255.255.255.255"]).all()
    assert not checksums.ipv4_valid(["300.1.2.3", "1.2.3.256", "1.2.3.4567", "010.1.1.1",
                                     "1.2.3"]).any()
    assert checksums.ipv6_valid(["2001:db8::8a2e:370:7334", "fe80::1",
                                 "::ffff:192.0.2.128", "1:2:3:4:5:6:7:8"]).all()
    assert not checksums.ipv6_valid(["::", "::1", "12:30:45", "00:1A:2B:3C:4D:5E",
                                     "1:2:3:4:5:6:7:8:9", "g::1"]).any()


# ---- recognizers ------------------------------------------------------------------------

def test_email():
    text = ["write to bob.smith+x@mail.example.co.uk. or alice@example.com",
            "icon@2x.png admin@localhost @handle a..b@example.com", "(eve@example.org)"]
    assert spans(text, "EMAIL_ADDRESS") == [(0, "bob.smith+x@mail.example.co.uk"),
                                            (0, "alice@example.com"), (2, "eve@example.org")]


def test_phone():
    text = ["call (212) 555-0143 or 212.555.0143, fax 212-555-0143",
            "+1 212 555 0143 and 1-212-555-0143 and 2125550143",
            "London +44 20 7946 0958, Paris +33 1 23 45 67 89.",
            # Too short, NANP area/exchange starting 0/1, inside longer digit runs,
            # dates, ZIP+4, digit groups of a card or an IBAN.
            "555-0143 112-555-0143 212-155-0143 order 12125550143999 2024-01-15 94107-1234",
            "card 4111 1111 1111 1111 iban DE89 3704 0044 0532 0130 00"]
    assert spans(text, "PHONE_NUMBER") == [
        (0, "(212) 555-0143"), (0, "212.555.0143"), (0, "212-555-0143"),
        (1, "+1 212 555 0143"), (1, "1-212-555-0143"), (1, "2125550143"),
        (2, "+44 20 7946 0958"), (2, "+33 1 23 45 67 89")]


def test_credit_card():
    amex = "3782 822463 10005"
    text = [f"paid with 4111 1111 1111 1111, refund to {amex}; old 5555-5555-5555-4444",
            "order 4111111111111112 (fails Luhn), 41111111111111111111 (too long)",
            "ISBN 978-0-306-40615-7, IBAN GB82 WEST 1234 5698 7654 32",
            "4111111111111111"]
    assert spans(text, "CREDIT_CARD") == [(0, "4111 1111 1111 1111"), (0, amex),
                                          (0, "5555-5555-5555-4444"), (3, "4111111111111111")]


def test_card_digits_in_a_mistyped_iban_are_not_a_card():
    # 3056 9309 0259 04 passes Luhn and is a Diners number; inside an IBAN-shaped account
    # number (check digits wrong here) it is not a card.
    assert checksums.card_number_valid(["30569309025904"])[0]
    text = ["bank GB00 WEST 3056 9309 0259 04 rejected", "card 3056 9309 0259 04"]
    assert spans(text, "CREDIT_CARD") == [(1, "3056 9309 0259 04")]


def test_iban():
    text = ["IBAN DE89 3704 0044 0532 0130 00 THEN stop", "GB82WEST12345698765432.",
            "bad DE88 3704 0044 0532 0130 00, QQ89370400440532013000, DE89370400440532013001",
            "BE68 5390 0754 7034 ABCD and BE68539007547034X"]
    assert spans(text, "IBAN_CODE") == [(0, "DE89 3704 0044 0532 0130 00"),
                                        (1, "GB82WEST12345698765432"),
                                        (3, "BE68 5390 0754 7034")]


def test_ip_address():
    text = ["from 192.168.1.10, then 10.0.0.1.", "v6 2001:db8::8a2e:370:7334 and ::ffff:192.0.2.128",
            "300.1.2.3 1.2.3.4567 1.2.3.4.5 version 4.12.1 at 12:30:45 mac 00:1A:2B:3C:4D:5E ::1"]
    assert spans(text, "IP_ADDRESS") == [(0, "192.168.1.10"), (0, "10.0.0.1"),
                                         (1, "2001:db8::8a2e:370:7334"),
                                         (1, "::ffff:192.0.2.128")]


def test_us_ssn():
    text = ["SSN 536-22-1234 or 536 22 1234.", "999-12-3456 000-12-3456 666-12-3456 "
            "536-00-1234 536-22-0000 078-05-1120 536-22 1234 536221234",
            "card 4536-22-1234-5 id 1536-22-1234"]
    assert spans(text, "US_SSN") == [(0, "536-22-1234"), (0, "536 22 1234")]


def test_find_several_entities_sorted_spans_and_nulls():
    values = pa.array([None, "x 536-22-1234 y bob@example.com z 536-22-4321", "",
                       "carol@example.org"])
    found = find(values, ["US_SSN", "EMAIL_ADDRESS"])
    assert list(found) == ["US_SSN", "EMAIL_ADDRESS"]
    assert found["US_SSN"].rows.tolist() == [1, 1]
    assert found["US_SSN"].starts.tolist() == [2, 34]
    assert found["US_SSN"].ends.tolist() == [13, 45]
    assert found["EMAIL_ADDRESS"].rows.tolist() == [1, 3]
    assert len(find(pa.array([], pa.string()), ["IP_ADDRESS"])["IP_ADDRESS"]) == 0


def test_whole_match():
    values = pa.chunked_array([["  bob@example.com ", "mail bob@example.com", None],
                               ["a@example.com b@example.com", "eve@example.org"]])
    assert whole_match(values, "EMAIL_ADDRESS").tolist() == [True, False, False, False, True]
    # Numbers are cast to text: a card number column stored as integers.
    cards = pa.array([4111111111111111, 4111111111111112, None], pa.int64())
    assert whole_match(cards, "CREDIT_CARD").tolist() == [True, False, False]


def test_a_new_entity_is_one_class(monkeypatch):
    class ZipCode(Recognizer):
        entity = "US_ZIP"
        prefilter = r"\d{5}"
        pattern = re.compile(r"(?<![\d-])\d{5}(?:-\d{4})?(?![\d-])")

        def validate(self, found):
            return np.array([not f.startswith("000") for f in found])

    monkeypatch.setitem(RECOGNIZERS, "US_ZIP", ZipCode())
    assert spans(["ship to 94107-1234, not 00012 or 123456"], "US_ZIP") == [(0, "94107-1234")]


def test_bad_entities_and_types_say_what_to_do():
    with pytest.raises(GovernanceError, match="EMAIL_ADRESS.*Did you mean 'EMAIL_ADDRESS'"):
        find(pa.array(["x"]), ["EMAIL_ADRESS"])
    with pytest.raises(GovernanceError, match="PERSON.*governance.scan.ner_model"):
        find(pa.array(["x"]), ["PERSON"])
    nested = pa.array([{"a": 1}])
    with pytest.raises(GovernanceError, match="no text form.*classification"):
        find(nested, ["EMAIL_ADDRESS"])


# ---- classification ---------------------------------------------------------------------

@pytest.fixture
def sample() -> pa.Table:
    n = 100
    notes = ["nothing to see"] * n
    for i in range(0, n, 10):  # one row in ten carries an SSN, one in 20 an email
        notes[i] = f"verified 536-22-{1000 + i:04d} on file"
    for i in range(5, n, 20):
        notes[i] = f"reply to c{i}@example.com"
    return pa.table({
        "email": [f"user{i}@example.com" if i % 10 else "n/a" for i in range(n)],
        "card": [4111111111111111] * n,
        "notes": notes,
        "city": ["Berlin"] * n,
        "empty": pa.nulls(n, pa.string()),
        "tags": pa.array([["a"]] * n),
    })


def test_classify_whole_columns_free_text_and_default(sample):
    got = {c.column: c for c in classify_table(sample, ScanConfig(), {})}
    assert list(got) == sample.column_names
    email = got["email"]
    assert (email.data_class, email.whole, email.entities, email.sampled, email.source) == \
        ("pii", True, {"EMAIL_ADDRESS": 0.9}, 100, "scan")
    assert (got["card"].data_class, got["card"].entities) == ("restricted", {"CREDIT_CARD": 1.0})
    notes = got["notes"]  # free text: the strictest entity found sets the class
    assert (notes.data_class, notes.whole) == ("restricted", False)
    assert notes.entities == {"US_SSN": 0.1, "EMAIL_ADDRESS": 0.05}
    for col in ("city", "empty", "tags"):
        assert (got[col].data_class, got[col].entities) == ("internal", {})
    assert got["empty"].sampled == 0


def test_classify_thresholds(sample):
    # 90% whole emails is under a 0.95 min_share: free text carrying emails instead.
    strict = ScanConfig(min_share=0.95, min_text_share=0.08, default_class="public")
    got = {c.column: c for c in classify_table(sample, strict, {})}
    assert (got["email"].data_class, got["email"].whole) == ("pii", False)
    assert got["notes"].entities == {"US_SSN": 0.1}  # emails in 5% < 8%: noise
    assert got["city"].data_class == "public"
    only_ip = ScanConfig(entities=["IP_ADDRESS"])
    assert {c.data_class for c in classify_table(sample, only_ip, {})} == {"internal"}


def test_classify_overrides_win(sample):
    got = {c.column: c for c in classify_table(
        sample, ScanConfig(), {"notes": "public", "city": "LOCATION", "card": "restricted"})}
    assert (got["notes"].data_class, got["notes"].entities, got["notes"].source) == \
        ("public", {}, "config")
    assert (got["city"].data_class, got["city"].entities, got["city"].whole) == \
        ("pii", {"LOCATION": 1.0}, True)
    assert got["card"].source == "config" and got["email"].source == "scan"
    with pytest.raises(GovernanceError, match="classification.nots.*Did you mean 'notes'"):
        classify_table(sample, ScanConfig(), {"nots": "pii"})
    with pytest.raises(GovernanceError, match="'secret' is neither a class nor an entity"):
        classify_table(sample, ScanConfig(), {"notes": "secret"})


def test_sample_rows():
    table = pa.table({"x": np.arange(1000)})
    a, b = sample_rows(table, 50, seed=3), sample_rows(table, 50, seed=3)
    assert a.equals(b) and a.num_rows == 50
    xs = a.column("x").to_pylist()
    assert xs == sorted(set(xs))
    assert sample_rows(table, 5000, seed=3).num_rows == 1000


# ---- NER (optional) ---------------------------------------------------------------------

@pytest.fixture
def no_cached_model():
    ner.load_model.cache_clear()
    yield
    ner.load_model.cache_clear()


def test_ner_without_spacy_says_what_to_install(monkeypatch, no_cached_model):
    monkeypatch.setitem(sys.modules, "spacy", None)  # import spacy raises ImportError
    with pytest.raises(GovernanceError, match="needs spaCy.*pip install spacy.*"
                                              "spacy download en_core_web_sm"):
        find(pa.array(["Alice lives in Paris"]), ["PERSON"], ner_model="en_core_web_sm")
    scan = ScanConfig(ner_model="en_core_web_sm")
    with pytest.raises(GovernanceError, match="needs spaCy"):
        classify_table(pa.table({"name": ["Alice"]}), scan, {})


def test_ner_with_a_missing_model_says_what_to_install(monkeypatch, no_cached_model):
    def load(name: str):
        raise OSError(f"[E050] Can't find model '{name}'.")

    monkeypatch.setitem(sys.modules, "spacy", types.SimpleNamespace(load=load))
    with pytest.raises(GovernanceError, match="'en_core_web_sm' is not an installed spaCy "
                                              "model.*spacy download en_core_web_sm"):
        ner.load_model("en_core_web_sm")


class _Ent:
    def __init__(self, text: str, word: str, label: str) -> None:
        self.start_char = text.index(word)
        self.end_char = self.start_char + len(word)
        self.label_ = label


class _Nlp:
    """A stand-in for a spaCy pipeline: capitalised words are PERSON, Paris is a GPE."""

    def pipe(self, texts, batch_size=256):
        for t in texts:
            yield types.SimpleNamespace(ents=[
                _Ent(t, w, "GPE" if w == "Paris" else "PERSON")
                for w in t.split() if w[:1].isupper()])


def test_ner_spans_and_classification(monkeypatch, no_cached_model):
    monkeypatch.setitem(sys.modules, "spacy", types.SimpleNamespace(load=lambda name: _Nlp()))
    values = pa.array(["Alice", None, "met Bob in Paris"])
    found = find(values, ["PERSON", "LOCATION", "EMAIL_ADDRESS"], ner_model="fake")
    assert found["PERSON"].rows.tolist() == [0, 2]
    assert (found["PERSON"].starts.tolist(), found["PERSON"].ends.tolist()) == ([0, 4], [5, 7])
    assert found["LOCATION"].starts.tolist() == [11]
    assert whole_match(values, "PERSON", ner_model="fake").tolist() == [True, False, False]
    scan = ScanConfig(ner_model="fake")
    assert scanned_entities(scan)[-2:] == ["PERSON", "LOCATION"]
    got = {c.column: c for c in classify_table(
        pa.table({"name": ["Alice", "Bob"], "note": ["in Paris", "ok"]}), scan, {})}
    assert (got["name"].entities, got["name"].whole) == ({"PERSON": 1.0}, True)
    assert (got["note"].entities, got["note"].data_class) == ({"LOCATION": 0.5}, "pii")
    # Without a model, names are not scanned: the column keeps the default class.
    assert classify_table(pa.table({"name": ["Alice"]}), ScanConfig(), {})[0].entities == {}
