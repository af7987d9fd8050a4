"""Tests of ``corral.report``: reports of real runs, and the renderers (SVG, HTML in Chromium, PNG)."""
