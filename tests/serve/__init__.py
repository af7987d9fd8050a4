"""Tests of ``corral.serve``: the real ``corral serve`` process, its clients and its attackers."""
