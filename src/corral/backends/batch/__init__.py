"""Provider batch APIs (OpenAI Batch, Anthropic Message Batches): half the price, answered within 24 h.

    _base       the contract every batch API meets (BatchAPI: submit, status, results, find, cancel)
    openai      OpenAI Batch: a JSONL file uploaded, a batch over it, output and error files
    anthropic   Anthropic Message Batches: one JSON body of requests, results as JSONL

Each speaks over its online backend's session, URL and key; :mod:`corral.jobs` drives them.
"""

from corral.backends.batch._base import BatchAPI, BatchLimits, LineResult, RemoteBatch
from corral.backends.batch.anthropic import AnthropicBatchAPI
from corral.backends.batch.openai import OpenAIBatchAPI

__all__ = ["AnthropicBatchAPI", "BatchAPI", "BatchLimits", "LineResult", "OpenAIBatchAPI", "RemoteBatch"]
