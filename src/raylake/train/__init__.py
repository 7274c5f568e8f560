"""Training on Ray Train (XGBoost, Torch DDP) from lake training sets, with Ray Tune sweeps."""
