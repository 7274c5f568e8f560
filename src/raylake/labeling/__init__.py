"""Labeling: weak supervision (labeling functions, label matrix, label model), soft
labels for training, active learning, semi-supervised learning and label errors, all
over lake tables. Heavy modules are imported where used, not here."""

from __future__ import annotations

from raylake.labeling.errors import DevSetError, LabelingError, LabelingFunctionError

__all__ = ["DevSetError", "LabelingError", "LabelingFunctionError"]
