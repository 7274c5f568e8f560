"""Feature store: definitions (entities, feature views, services) and point-in-time retrieval."""

from raylake.features.definitions import Entity, FeatureView, Registry, check_against_lake, resolve
from raylake.features.offline import RetrievalJob, get_historical_features

__all__ = [
    "Entity",
    "FeatureView",
    "Registry",
    "RetrievalJob",
    "check_against_lake",
    "get_historical_features",
    "resolve",
]
