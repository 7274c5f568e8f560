"""Data that ships with raylake (youtube_spam/) and generators of data that may not
(recsys_world: a recommendation world with known ground truth)."""
