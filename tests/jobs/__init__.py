"""Tests of ``corral.jobs``: durable runs (kill and resume), batch jobs, jobs on Ray."""
