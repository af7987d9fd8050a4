"""Tests of ``corral.cli``: the commands (in this process where they can be), signals, progress."""
