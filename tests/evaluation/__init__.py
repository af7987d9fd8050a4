"""Tests of ``corral.evaluation``: every figure against one worked out by hand (or by brute force)
in the test itself."""
