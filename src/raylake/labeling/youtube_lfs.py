"""The Python labeling functions of the YouTube spam example (conf/labeling/youtube_spam.yaml
declares the keyword and regex ones). Classes: 0 ham, 1 spam."""

from __future__ import annotations

import re
from typing import Any

from raylake.labeling.lfs import ABSTAIN, labeling_function

HAM, SPAM = 0, 1

_WORD = re.compile(r"[a-z']+")
_POSITIVE = frozenset(
    "love loved loves lovely beautiful amazing awesome great best good nice cool perfect "
    "favorite favourite gorgeous talented wonderful brilliant epic legend legendary queen "
    "king sexy hot fantastic incredible classic masterpiece".split())
_NEGATIVE = frozenset("hate hated hates ugly worst terrible awful stupid sucks bad boring "
                      "annoying disgusting".split())
_SELF_PROMO = frozenset("my channel chanel subscribe subscribed sub check video please plz pls free "
                        "win like".split())


@labeling_function(name="short_comment")
def short_comment(x: Any) -> int:
    """Ham: spam comments advertise something and are rarely under five words (a bare link
    or a "subscribe" is not ham, short as it is)."""
    text = x.text.lower()
    words = _WORD.findall(text)
    if "http" in text or "www" in text or _SELF_PROMO.intersection(words):
        return ABSTAIN
    return HAM if len(words) < 5 else ABSTAIN


@labeling_function(name="sentiment")
def sentiment(x: Any) -> int:
    """Ham: an opinion about the song (polar words) with no self-promotion in it."""
    words = _WORD.findall(x.text.lower())
    if not words or _SELF_PROMO.intersection(words):
        return ABSTAIN
    polar = sum(w in _POSITIVE for w in words) + sum(w in _NEGATIVE for w in words)
    return HAM if polar >= 1 and len(words) <= 25 else ABSTAIN
