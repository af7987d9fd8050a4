"""Provider batch APIs (OpenAI Batch, Anthropic Message Batches): half the price, answered within 24 h."""

from corral.backends.batch._base import BatchAPI, BatchLimits, LineResult, RemoteBatch
from corral.backends.batch.anthropic import AnthropicBatchAPI
from corral.backends.batch.openai import OpenAIBatchAPI

__all__ = ["AnthropicBatchAPI", "BatchAPI", "BatchLimits", "LineResult", "OpenAIBatchAPI", "RemoteBatch"]
