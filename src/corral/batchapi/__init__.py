"""Provider batch APIs (OpenAI Batch, Anthropic Message Batches): half the price, answered within 24 h."""

from corral.batchapi.anthropic import AnthropicBatchAPI
from corral.batchapi.base import BatchAPI, BatchLimits, LineResult, RemoteBatch
from corral.batchapi.openai import OpenAIBatchAPI

__all__ = ["AnthropicBatchAPI", "BatchAPI", "BatchLimits", "LineResult", "OpenAIBatchAPI", "RemoteBatch"]
