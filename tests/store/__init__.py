"""Tests of ``corral.store``: the run store and the response cache on real SQLite files."""
