"""Tests of ``corral.backends``: the OpenAI and Anthropic wires, batch APIs, headers, models, local."""
