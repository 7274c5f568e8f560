"""Recommendations on the lake: two-tower retrieval trained on Ray Train, item vectors and
a nearest-neighbour index in the registry, a ranker from the feature store's point-in-time
training set, offline evaluation against the generated world's truth, and ``POST
/recommend`` on Ray Serve. See docs/recommendations.md."""
