"""``raylake chain``: the whole lifecycle on one lake (see :mod:`raylake.chain.jobs`)."""
