"""Learned models: item factors (matrix factorisation) and the user tower."""
