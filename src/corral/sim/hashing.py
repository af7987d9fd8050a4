"""The simulator's deterministic hashes: a text's seed, a path's step, and the mix that spreads them.

Nothing the simulator answers is drawn from a random stream that depends on arrival order: values
come from these hashes of (text, place in the answer), so the same request always gets the same
answer, on any server, in any order.
"""

from __future__ import annotations

import zlib

__all__ = ["mix", "step", "text_seed", "unit"]


def step(h: int, salt: int) -> int:
    """The hash of a child path: cheap and order-sensitive; :func:`mix` it before using it."""
    return (h * 1_000_003 + salt) & 0xFFFFFFFF


def mix(h: int) -> int:
    """A 32-bit avalanche: per-field values that differ, but never vary between runs."""
    x = (h * 0x9E3779B1) & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & 0xFFFFFFFF
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & 0xFFFFFFFF
    return x ^ (x >> 16)


def unit(h: int) -> float:
    """``h`` mixed into [0, 1): a draw that is the same whenever ``h`` is."""
    return mix(h) / 0x1_0000_0000


def text_seed(text: str) -> int:
    return zlib.crc32(text.encode())
