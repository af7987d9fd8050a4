"""Tests of ``corral.engine``: strategies, re-asks, retries, limits and pacing, token estimates."""
