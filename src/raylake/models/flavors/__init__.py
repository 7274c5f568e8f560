"""Model flavors, found by name: ``get_flavor("xgboost").save(booster)``.

Every flavor saves in a format that holds no code and loads without running any;
nothing here pickles a model object. The built-in flavors (``xgboost``, ``torch``,
``torch_int8``, ``image_classifier``, ``ann_index``) are registered when this package
is imported; their frameworks are imported only when a model of theirs is saved, loaded
or scored. A new flavor subclasses
:class:`Flavor` in its own module here and is registered below (or, from outside,
with :func:`register_flavor`).
"""

from raylake.models.flavors.ann_index import AnnIndexFlavor
from raylake.models.flavors.base import (
    Flavor,
    SavedModel,
    flavor_names,
    get_flavor,
    register_flavor,
    unregister_flavor,
)
from raylake.models.flavors.image_classifier import ImageClassifierFlavor
from raylake.models.flavors.torch_flavor import TorchFlavor
from raylake.models.flavors.torch_int8 import TorchInt8Flavor
from raylake.models.flavors.xgboost_flavor import XGBoostFlavor

register_flavor(XGBoostFlavor())
register_flavor(TorchFlavor())
register_flavor(TorchInt8Flavor())
register_flavor(ImageClassifierFlavor())
register_flavor(AnnIndexFlavor())

__all__ = [
    "AnnIndexFlavor",
    "Flavor",
    "ImageClassifierFlavor",
    "SavedModel",
    "TorchFlavor",
    "TorchInt8Flavor",
    "XGBoostFlavor",
    "flavor_names",
    "get_flavor",
    "register_flavor",
    "unregister_flavor",
]
