"""Errors of the labeling domain (weak supervision, active learning, label issues)."""

from __future__ import annotations

from raylake.errors import RaylakeError


class LabelingError(RaylakeError):
    """A labeling function, label matrix, label model or dev set cannot be used as
    given; the message names the bad value and the fix."""


class LabelingFunctionError(LabelingError):
    """A labeling function is declared wrongly (unknown kind, bad pattern, bad label)."""


class DevSetError(LabelingError, ValueError):
    """A labelled dev set cannot score labeling functions or a label model (too small,
    one class only, labels outside the cardinality)."""
