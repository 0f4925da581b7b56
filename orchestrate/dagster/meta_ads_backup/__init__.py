"""Sharded Meta Ads backups on Dagster: the Dagster code is in `definitions.py`, the rest is plain Python."""
