"""Provider batch APIs (OpenAI Batch, Anthropic Message Batches): half the price, answered within 24 h."""

from corral.batchapi.base import BatchAPI, BatchLimits, LineResult, RemoteBatch

__all__ = ["BatchAPI", "BatchLimits", "LineResult", "RemoteBatch"]
