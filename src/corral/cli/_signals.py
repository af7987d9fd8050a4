"""Ctrl-C and SIGTERM during a command: cancel the run cleanly, keep what finished."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

__all__ = ["stop_on_signals"]


class _Stopping:
    def __init__(self) -> None:
        self.signal_name = ""

    def is_set(self) -> bool:
        return bool(self.signal_name)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[_Stopping]:
    """Ctrl-C or SIGTERM cancels the run (every in-flight request) instead of killing the process,
    so finished records are committed and written and the summary printed. A second signal is not
    special: the first has already started the shutdown, which only waits for cancellations.

    The cancellation our own signal caused ends at this block (``stopping.is_set()`` says it came);
    any other cancellation goes on up."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    stopping = _Stopping()

    def stop(name: str) -> None:
        if task is not None and not stopping.is_set():
            stopping.signal_name = name
            task.cancel()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop, sig.name)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or not POSIX
            continue
    try:
        yield stopping
    except asyncio.CancelledError:
        if not stopping.is_set() or task is None:
            raise
        task.uncancel()  # ours: every request is cancelled and the results kept
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
