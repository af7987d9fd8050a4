"""Tests of ``corral.io``: reading items, writing sinks."""
