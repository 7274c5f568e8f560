"""Continuous training: rebuild the training set on a recent window, train a challenger, promote it only when it beats the champion on the newest labelled holdout."""
