"""Tests of ``corral.sim``, the simulated provider every other test talks to."""
