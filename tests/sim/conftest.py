"""The simulator on this test's event loop, and an HTTP client to speak to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from corral.sim import Simulator


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
