"""A generated customer table with PII at known places, for benchmarks/pii_scan.py.

    python benchmarks/pii_data.py [--rows 100000] [--seed 0] [--show 5]

Own generator (no Faker), fixed seed. ``make_table(rows, seed)`` returns the table and its
ground truth: one row per planted value (column, row, entity, start, end, value), spans
in Python characters.

Columns:
- ``email``, ``phone``, ``card_number``, ``iban``, ``ip``, ``ssn``: one valid value per row
  (2% nulls), in the formats people write: cards plain, in groups of four with spaces or
  dashes (Amex 4-6-5); IBANs of 20 countries compact or grouped; North American phones in
  eight formats and international ones with ``+``; IPv4 and IPv6 (compressed, full,
  mapped); one email in ten capitalised.
- ``name``: a person's name (PERSON: found only with an NER model; the free text plants
  no names, so the pattern entities' scores do not depend on one).
- ``order_number``: decoys only: card-length numbers with a card prefix that fail Luhn.
- ``notes``, ``ticket``: free text; PII planted in about 40% and 25% of the rows, decoys in
  others: Luhn-failing order numbers, IBANs with wrong check digits or an unknown country,
  SSNs with area 000/666/9xx, group 00 or serial 0000, ``300.1.2.3``, version strings
  (``1.2.3.4567``, ``4.12.1``), five-part numbers, times, MAC addresses, ISBNs, dates, ZIP+4
  codes, seven-digit local numbers, ``icon@2x.png``, ``user@localhost``, ``@handles``.
- ``build``: version strings and build ids (decoys for IP and card).
- ``description``: product text without PII.
"""

from __future__ import annotations

import argparse
import random
import string
from collections.abc import Callable

import pyarrow as pa

FIRST = ("James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William "
         "Barbara Richard Susan Joseph Jessica Thomas Sarah Charles Karen Aisha Wei Mohammed "
         "Sofia Lukas Emma Hiroshi Olga Mateo Priya Chloe Ahmed Ingrid Pablo Fatima Jonas "
         "Nadia Omar Elena Ravi").split()
LAST = ("Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
        "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson "
        "White Harris Sanchez Clark Ramirez Lewis Robinson Nguyen Kim Müller Schmidt Rossi "
        "Dubois Kowalski Tanaka Okafor O'Brien").split()
DOMAINS = ("gmail.com yahoo.com outlook.com example.com example.org mail.example.net "
           "company.co.uk web.de orange.fr acme.io uni-heidelberg.de proton.me "
           "posteo.de shop.example.store health.example.health sub.dept.example.gov").split()
PRODUCTS = ("blue widget", "steel bolt M8", "garden hose 20m", "USB-C cable", "desk lamp",
            "coffee beans 1kg", "running shoes", "wool scarf", "phone case", "notebook A5")

# Country -> BBAN layout: 'n' a digit, 'a' an upper-case letter, 'c' either.
IBAN_LAYOUT = {
    "DE": "n" * 18, "GB": "aaaa" + "n" * 14, "FR": "n" * 10 + "c" * 11 + "nn",
    "ES": "n" * 20, "IT": "a" + "n" * 10 + "c" * 12, "NL": "aaaa" + "n" * 10,
    "BE": "n" * 12, "CH": "n" * 5 + "c" * 12, "AT": "n" * 16, "PL": "n" * 24,
    "SE": "n" * 20, "DK": "n" * 14, "NO": "n" * 11, "FI": "n" * 14, "IE": "aaaa" + "n" * 14,
    "PT": "n" * 21, "LU": "nnn" + "c" * 13, "CZ": "n" * 20, "RO": "aaaa" + "c" * 16,
    "SA": "nn" + "c" * 18,
}
CARD_BRANDS = [  # prefix, length, grouping
    ("4", 16, (4, 4, 4, 4)), ("4", 13, (4, 4, 5)), ("51", 16, (4, 4, 4, 4)),
    ("55", 16, (4, 4, 4, 4)), ("2221", 16, (4, 4, 4, 4)), ("34", 15, (4, 6, 5)),
    ("37", 15, (4, 6, 5)), ("6011", 16, (4, 4, 4, 4)), ("65", 16, (4, 4, 4, 4)),
    ("3530", 16, (4, 4, 4, 4)), ("36", 14, (4, 6, 4)), ("62", 16, (4, 4, 4, 4)),
]
COLUMNS = ["id", "name", "email", "phone", "card_number", "iban", "ip", "ssn",
           "order_number", "notes", "ticket", "build", "description"]


class Gen:
    """Random values of each kind; ``valid_*`` are PII, ``decoy_*`` look like it."""

    def __init__(self, seed: int) -> None:
        # Python's generator: a draw at a time is ten times cheaper than numpy's.
        self.rng = random.Random(seed)

    def pick(self, seq):  # noqa: ANN001, ANN201
        return self.rng.choice(seq)

    def r(self, lo: int, hi: int, n: int | None = None):  # noqa: ANN201
        """Uniform integers in [lo, hi): one, or a list of ``n``."""
        if n is None:
            return self.rng.randrange(lo, hi)
        return [self.rng.randrange(lo, hi) for _ in range(n)]

    def digits(self, n: int) -> str:
        return "".join(self.rng.choices(string.digits, k=n))

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    # ---- valid -------------------------------------------------------------------------
    def name(self) -> str:
        return f"{self.pick(FIRST)} {self.pick(LAST)}"

    def email(self) -> str:
        first, last = self.pick(FIRST).lower(), self.pick(LAST).lower().replace("'", "")
        last = last.replace("ü", "u")
        local = self.pick([f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}{self.digits(2)}",
                           f"{first}+news", f"{last}.{first}{self.digits(1)}"])
        email = f"{local}@{self.pick(DOMAINS)}"
        return email.title() if self.chance(0.1) else email  # John.Smith@Example.Com

    def phone(self) -> str:
        area = f"{self.r(2, 10)}{self.digits(2)}"
        ex = f"{self.r(2, 10)}{self.digits(2)}"
        line = self.digits(4)
        k = self.r(0, 10)
        if k < 6:
            return self.pick([f"({area}) {ex}-{line}", f"{area}-{ex}-{line}", f"{area}.{ex}.{line}",
                              f"+1 {area} {ex} {line}", f"1-{area}-{ex}-{line}", f"{area}{ex}{line}",
                              f"+1 ({area}) {ex}-{line}", f"+1{area}{ex}{line}"])
        return self.pick([f"+44 20 {self.digits(4)} {self.digits(4)}",
                          f"+49 30 {self.r(1, 10)}{self.digits(7)}",
                          f"+33 {self.r(1, 10)} {self.digits(2)} {self.digits(2)} "
                          f"{self.digits(2)} {self.digits(2)}",
                          f"+91 {self.r(6, 10)}{self.digits(4)} {self.digits(5)}",
                          f"+61 {self.r(2, 5)} {self.digits(4)} {self.digits(4)}"])

    @staticmethod
    def luhn_digit(body: str) -> str:
        total = 0
        for i, ch in enumerate(reversed(body)):
            d = int(ch)
            if i % 2 == 0:  # doubled once the check digit is appended
                d = d * 2 - 9 if d > 4 else d * 2
            total += d
        return str((10 - total % 10) % 10)

    def card_digits(self) -> tuple[str, tuple[int, ...]]:
        prefix, n, groups = self.pick(CARD_BRANDS)
        body = prefix + self.digits(n - len(prefix) - 1)
        return body + self.luhn_digit(body), groups

    @staticmethod
    def grouped(number: str, groups: tuple[int, ...], sep: str) -> str:
        out, i = [], 0
        for g in groups:
            out.append(number[i:i + g])
            i += g
        return sep.join(out)

    def card(self) -> str:
        number, groups = self.card_digits()
        k = self.rng.random()
        return number if k < 0.4 else self.grouped(number, groups, " " if k < 0.75 else "-")

    def bban(self, layout: str) -> str:
        pools = {"n": string.digits, "a": string.ascii_uppercase,
                 "c": string.digits + string.ascii_uppercase}
        return "".join(self.pick(pools[c]) for c in layout)

    @staticmethod
    def mod97(s: str) -> int:
        return int("".join(str(int(ch, 36)) for ch in s)) % 97

    def iban_compact(self) -> str:
        country = self.pick(list(IBAN_LAYOUT))
        bban = self.bban(IBAN_LAYOUT[country])
        check = 98 - self.mod97(bban + country + "00")
        return f"{country}{check:02d}{bban}"

    @staticmethod
    def iban_grouped(iban: str) -> str:
        return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))

    def iban(self) -> str:
        iban = self.iban_compact()
        return iban if self.chance(0.5) else self.iban_grouped(iban)

    def ip(self) -> str:
        if self.chance(0.8):
            first = self.pick([10, 172, 192, 8, 34, 52, 81, 100, 203, 217])
            return ".".join(str(x) for x in [first, *self.r(0, 256, 3)])
        groups = [f"{int(x):x}" for x in self.r(0, 65536, 8)]
        k = self.r(0, 3)
        if k == 0:
            return ":".join(groups)
        if k == 1:
            return "2001:db8:" + ":".join(groups[:3]) + "::" + groups[7]
        return f"::ffff:192.0.2.{self.r(1, 255)}"

    def ssn(self) -> str:
        while True:
            area = self.r(1, 900)
            if area != 666:
                break
        group, serial = self.r(1, 100), self.r(1, 10000)
        sep = "-" if self.chance(0.85) else " "
        return f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"

    # ---- decoys ------------------------------------------------------------------------
    def decoy_order(self) -> str:
        """Card-length, a card prefix, fails Luhn."""
        number, _ = self.card_digits()
        wrong = (int(number[-1]) + self.r(1, 10)) % 10
        return number[:-1] + str(wrong)

    def decoy_iban(self) -> str:
        iban = self.iban_compact()
        k = self.r(0, 3)
        if k == 0:  # wrong check digits
            good = int(iban[2:4])
            bad = (good + self.r(1, 96) - 2) % 97 + 2
            iban = f"{iban[:2]}{bad:02d}{iban[4:]}"
        elif k == 1:  # one character of the account changed
            i = int(self.r(4, len(iban)))
            ch = iban[i]
            new = str((int(ch) + 1) % 10) if ch.isdigit() else ("A" if ch != "A" else "B")
            iban = iban[:i] + new + iban[i + 1:]
        else:  # a country that does not exist
            iban = self.pick(["QQ", "ZZ", "XY"]) + iban[2:]
        return iban if self.chance(0.5) else self.iban_grouped(iban)

    def decoy_ssn(self) -> str:
        a, g, s = f"{self.r(1, 900):03d}", f"{self.r(1, 100):02d}", \
            f"{self.r(1, 10000):04d}"
        k = self.r(0, 5)
        if k == 0:
            a = "000"
        elif k == 1:
            a = "666"
        elif k == 2:
            a = str(self.r(900, 1000))
        elif k == 3:
            g = "00"
        else:
            s = "0000"
        return f"{a}-{g}-{s}"

    def decoy_ip(self) -> str:
        return self.pick([f"{self.r(256, 1000)}.{self.r(0, 256)}."
                          f"{self.r(0, 256)}.{self.r(0, 256)}",
                          f"{self.r(1, 10)}.{self.r(0, 20)}."
                          f"{self.r(0, 10)}.{self.r(1000, 10000)}",
                          f"{self.r(1, 10)}.{self.r(0, 20)}."
                          f"{self.r(0, 50)}",
                          ".".join(str(x) for x in self.r(0, 10, 5))])

    def decoy_version(self) -> str:
        return self.pick([f"v{self.r(1, 10)}.{self.r(0, 30)}.{self.r(0, 100)}",
                          f"{self.r(1, 10)}.{self.r(0, 20)}."
                          f"{self.r(0, 10)}.{self.r(1000, 10000)}",
                          f"build {self.digits(8)}-{self.digits(4)}",
                          f"release-{self.r(2019, 2026)}.{self.r(1, 13):02d}"])

    def decoy_misc(self) -> str:
        h = [f"{int(x):02X}" for x in self.r(0, 256, 6)]
        return self.pick([
            f"{self.r(0, 24):02d}:{self.r(0, 60):02d}:{self.r(0, 60):02d}",
            ":".join(h), f"978-{self.r(0, 2)}-{self.digits(3)}-{self.digits(5)}-{self.digits(1)}",
            f"{self.r(2019, 2026)}-{self.r(1, 13):02d}-{self.r(1, 29):02d}",
            f"{self.digits(5)}-{self.digits(4)}", f"{self.r(2, 10)}{self.digits(2)}-{self.digits(4)}",
            "icon@2x.png", "admin@localhost", f"@{self.pick(FIRST).lower()}{self.digits(2)}",
            f"${self.r(1, 999)},{self.digits(3)}.{self.digits(2)}", self.digits(9),
            f"INV-{self.digits(12)}", f"1Z{self.digits(16)}"])


# Free text: (kind, template); {v} is the planted value or decoy.
NOTE_PII = {
    "EMAIL_ADDRESS": ["Customer asked to send the invoice to {v} instead.",
                      "Contact: {v}", "reply-to {v}; cc accounting", "email ({v}) bounced twice",
                      "From: Jane <{v}>", "mailto:{v}"],
    "PHONE_NUMBER": ["Called back on {v} at 3pm.", "Phone: {v}.", "prefers a call ({v}) after 6",
                     "mobile {v}, landline unknown", "tel:{v}", "call {v} ext. 12"],
    "CREDIT_CARD": ["Paid with card {v} on the second try.", "card no. {v} declined",
                    "Refund to {v}.", "CC: {v} exp 04/27"],
    "IBAN_CODE": ["Wire refund to IBAN {v} please.", "bank account {v} (verified)",
                  "IBAN: {v}", "SEPA transfer from {v} received"],
    "IP_ADDRESS": ["Login from {v} flagged.", "last seen at {v}", "blocked IP {v} after 5 tries",
                   "request came from {v}.", "client=[{v}] port 443", "X-Forwarded-For: {v}"],
    "US_SSN": ["SSN {v} on file.", "Tax id (SSN): {v}", "verified ssn {v} with the W-9",
               "SSN: {v}.", "ssn:{v}"],
}
NOTE_DECOY = {
    "order": ["Order #{v} shipped.", "order number {v} delayed", "ref {v} reopened"],
    "iban": ["IBAN {v} rejected by the bank.", "typo in account {v}"],
    "ssn": ["placeholder id {v} in the form", "test SSN {v} (invalid)"],
    "ip": ["firmware {v} installed", "see section {v} of the manual"],
    "version": ["upgraded to {v}", "crash in {v}"],
    "misc": ["logged at {v}", "item {v}", "ref {v}", "see {v}"],
}
FILLER = ["Customer was happy with the service.", "Delivery was late by two days.",
          "Asked about the return policy.", "No further action needed.",
          "Escalated to tier 2.", "Package left with the neighbour.", "Duplicate ticket, closed.",
          "Wants the blue one instead of the red one.", "Follow up next week."]


def make_table(rows: int = 100_000, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """The table and its ground truth (column, row, entity, start, end, value)."""
    g = Gen(seed)
    truth: dict[str, list] = {k: [] for k in ("column", "row", "entity", "start", "end", "value")}

    def plant(col: str, row: int, entity: str, start: int, value: str) -> None:
        for k, v in zip(truth, (col, row, entity, start, start + len(value), value)):
            truth[k].append(v)

    whole: dict[str, tuple[str, Callable[[], str]]] = {
        "email": ("EMAIL_ADDRESS", g.email), "phone": ("PHONE_NUMBER", g.phone),
        "card_number": ("CREDIT_CARD", g.card), "iban": ("IBAN_CODE", g.iban),
        "ip": ("IP_ADDRESS", g.ip), "ssn": ("US_SSN", g.ssn)}
    data: dict[str, list] = {c: [] for c in COLUMNS}
    valid = {e: fn for e, fn in whole.values()}
    decoys = {"order": g.decoy_order, "iban": g.decoy_iban, "ssn": g.decoy_ssn,
              "ip": g.decoy_ip, "version": g.decoy_version, "misc": g.decoy_misc}

    def text(col: str, row: int, p_pii: float, p_decoy: float) -> str:
        parts: list[str] = []
        at = 0
        for _ in range(int(g.r(1, 4))):
            if parts:
                at += 1  # the joining space
            if g.chance(p_pii):
                entity = g.pick(list(NOTE_PII))
                tpl, value = g.pick(NOTE_PII[entity]), valid[entity]()
                plant(col, row, entity, at + tpl.index("{v}"), value)
                part = tpl.replace("{v}", value)
            elif g.chance(p_decoy):
                kind = g.pick(list(NOTE_DECOY))
                part = g.pick(NOTE_DECOY[kind]).replace("{v}", decoys[kind]())
            else:
                part = g.pick(FILLER)
            parts.append(part)
            at += len(part)
        return " ".join(parts)

    for row in range(rows):
        data["id"].append(row)
        name = g.name()
        plant("name", row, "PERSON", 0, name)
        data["name"].append(name)
        for col, (entity, fn) in whole.items():
            if g.chance(0.02):
                data[col].append(None)
                continue
            value = fn()
            plant(col, row, entity, 0, value)
            data[col].append(value)
        data["order_number"].append(g.decoy_order())
        data["notes"].append(text("notes", row, 0.18, 0.3))
        data["ticket"].append(text("ticket", row, 0.1, 0.5) if g.chance(0.9) else None)
        data["build"].append(g.decoy_version() if g.chance(0.7) else g.decoy_ip())
        data["description"].append(f"{g.pick(PRODUCTS)}, qty {g.r(1, 20)}, "
                                   f"{g.r(1, 500)}.{g.digits(2)} EUR")
    table = pa.table({c: pa.array(v, pa.int64() if c == "id" else pa.string())
                      for c, v in data.items()})
    return table, pa.table({k: pa.array(v) for k, v in truth.items()})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show", type=int, default=5)
    args = ap.parse_args()
    table, truth = make_table(args.rows, args.seed)
    for row in table.slice(0, args.show).to_pylist():
        print(row)
    print(f"{table.num_rows} rows, {truth.num_rows} planted values")
    counts = truth.group_by("entity").aggregate([("row", "count")]).to_pylist()
    for c in sorted(counts, key=lambda c: c["entity"]):
        print(f"  {c['entity']:<14} {c['row_count']}")


if __name__ == "__main__":
    main()
