"""Offline evaluation through the serving path."""
