"""The checks that tell a real identifier from a string of the same shape, vectorised with
numpy over the candidates a pattern found (never over a whole column).

Each function takes a sequence of candidate strings in the compact form its docstring names
(separators already removed) and answers a boolean array, one entry per candidate. A random
16-digit number passes Luhn one time in ten and a random IBAN-shaped string passes mod 97 one
time in 97, so these checks, not the patterns, are what keep order numbers and typos out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import numpy as np

# ISO 13616 lengths of the IBAN per country (the SWIFT IBAN registry); a country not
# listed here is not accepted, so an "IBAN" from an unknown country never matches.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}

# SSNs the SSA never issued although the rules allow them: Woolworth's wallet card
# (078-05-1120) and the 1940s advertising number (219-09-9999).
_RETIRED_SSNS = np.array([78051120, 219099999], np.int64)


def _codes(values: Sequence[str], width: int) -> np.ndarray:
    """(n, width) code points, left-aligned, 0 past each string's end. Strings longer than
    ``width`` must have been refused by the caller."""
    if not len(values):
        return np.zeros((0, width), np.uint32)
    return np.asarray(values, dtype=f"<U{width}").view(np.uint32).reshape(len(values), width)


def _lengths(values: Sequence[str]) -> np.ndarray:
    return np.fromiter((len(v) for v in values), np.int64, len(values))


def luhn_valid(numbers: Sequence[str]) -> np.ndarray:
    """Luhn (mod 10) check of digit strings: from the right, every second digit doubled
    (minus 9 above 9), the sum a multiple of 10."""
    lengths = _lengths(numbers)
    width = int(lengths.max(initial=1))
    codes = _codes(numbers, width)
    digit = codes.astype(np.int64) - 48
    is_digit = (digit >= 0) & (digit <= 9)
    pos = np.arange(width)[None, :]
    from_right = lengths[:, None] - 1 - pos  # 0 for the check digit
    inside = from_right >= 0
    doubled = np.where(from_right % 2 == 1, digit * 2, digit)
    doubled = np.where(doubled > 9, doubled - 9, doubled)
    total = np.where(inside, doubled, 0).sum(axis=1)
    all_digits = (is_digit | ~inside).all(axis=1)
    return all_digits & (lengths > 0) & (total % 10 == 0)


def card_number_valid(numbers: Sequence[str]) -> np.ndarray:
    """A payment card number (digits only): 13-19 digits, a known issuer prefix with a
    length that issuer uses, and the Luhn check. The prefix check keeps Luhn-passing ISBNs,
    account and order numbers out (one random number in ten passes Luhn)."""
    lengths = _lengths(numbers)
    ok = (lengths >= 13) & (lengths <= 19)
    if not ok.any():
        return ok
    digits = _codes(numbers, int(lengths.max())).astype(np.int64)[:, :6] - 48
    head = digits @ (10 ** np.arange(5, -1, -1))  # the first six digits as a number
    p1, p2, p3, p4 = head // 100_000, head // 10_000, head // 1000, head // 100
    n = lengths
    brand = (
        ((p1 == 4) & np.isin(n, (13, 16, 19)))  # Visa
        | ((((p2 >= 51) & (p2 <= 55)) | ((p4 >= 2221) & (p4 <= 2720))) & (n == 16))  # MC
        | (np.isin(p2, (34, 37)) & (n == 15))  # American Express
        | (((p4 == 6011) | (p2 == 65) | ((p3 >= 644) & (p3 <= 649))) & (n >= 16))  # Discover
        | (((p4 >= 3528) & (p4 <= 3589)) & (n >= 16))  # JCB
        | ((((p3 >= 300) & (p3 <= 305)) | np.isin(p2, (36, 38, 39))) & (n >= 14))  # Diners
        | ((p2 == 62) & (n >= 16))  # UnionPay
        | (((p2 == 50) | ((p2 >= 56) & (p2 <= 69))) & (n >= 13))  # Maestro
    )
    return ok & brand & luhn_valid(numbers)


def iban_valid(ibans: Sequence[str]) -> np.ndarray:
    """ISO 13616: upper-case letters and digits, no spaces; the country's length; and the
    number formed by moving the first four characters to the end (letters A=10 .. Z=35)
    is 1 modulo 97."""
    lengths = _lengths(ibans)
    if not len(ibans):
        return np.zeros(0, bool)
    width = int(lengths.max())
    codes = _codes(ibans, width).astype(np.int64)
    country = np.array([s[:2] for s in ibans])
    expected = np.array([IBAN_LENGTHS.get(c, -1) for c in country.tolist()], np.int64)
    ok = expected == lengths
    # Rotate each row left by 4 within its own length: column j reads (j + 4) mod length.
    j = np.arange(width)[None, :]
    src = (j + 4) % np.maximum(lengths, 1)[:, None]
    rot = np.take_along_axis(codes, src, axis=1)
    inside = j < lengths[:, None]
    is_digit = (rot >= 48) & (rot <= 57)
    is_upper = (rot >= 65) & (rot <= 90)
    ok &= ((is_digit | is_upper) | ~inside).all(axis=1)
    ok &= np.array([s[2:4].isdigit() for s in ibans], bool)
    value = np.where(is_digit, rot - 48, rot - 55)
    r = np.zeros(len(ibans), np.int64)
    for col in range(width):  # one pass per character position, over every candidate
        step = np.where(is_digit[:, col], (r * 10 + value[:, col]) % 97,
                        (r * 100 + value[:, col]) % 97)
        r = np.where(inside[:, col], step, r)
    return ok & (r == 1)


def ssn_valid(ssns: Sequence[str]) -> np.ndarray:
    """A US Social Security number (9 digits) the SSA could have issued: area not 000, 666
    or 900-999, group not 00, serial not 0000, and not a publicly retired number."""
    lengths = _lengths(ssns)
    digits = _codes(ssns, 9).astype(np.int64) - 48
    ok = (lengths == 9) & ((digits >= 0) & (digits <= 9)).all(axis=1)
    num = np.where(ok, digits @ (10 ** np.arange(8, -1, -1)), 0)
    area, group, serial = num // 1_000_000, (num // 10_000) % 100, num % 10_000
    return (ok & (area != 0) & (area != 666) & (area < 900) & (group != 0) & (serial != 0)
            & ~np.isin(num, _RETIRED_SSNS))


def ipv4_valid(addresses: Sequence[str]) -> np.ndarray:
    """Dotted quads with every octet 0-255 and no leading zero (``010`` reads as octal to
    some parsers and as a version part to people; Python's ipaddress refuses it too)."""
    if not len(addresses):
        return np.zeros(0, bool)
    parts = [a.split(".") for a in addresses]
    shaped = np.array([len(p) == 4 and all(x.isdigit() and 1 <= len(x) <= 3 for x in p)
                       for p in parts], bool)
    octets = np.array([p if good else ["0"] * 4 for p, good in zip(parts, shaped)], dtype="<U3")
    values = octets.astype(np.int64)
    leading_zero = np.char.startswith(octets, "0") & (np.char.str_len(octets) > 1)
    return shaped & (values <= 255).all(axis=1) & ~leading_zero.any(axis=1)


def ipv6_valid(addresses: Sequence[str]) -> np.ndarray:
    """Addresses Python's ipaddress parses as IPv6, with at least two non-empty groups
    (``::`` and ``::1`` are placeholders and loopback, nobody's address)."""
    out = np.zeros(len(addresses), bool)
    for i, a in enumerate(addresses):
        try:
            ipaddress.IPv6Address(a)
        except ValueError:
            continue
        out[i] = sum(1 for g in a.split(":") if g) >= 2
    return out
