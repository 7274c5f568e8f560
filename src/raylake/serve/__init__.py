"""Model serving: batch inference over lake tables (Ray Data)."""
