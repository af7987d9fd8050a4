"""``corral serve`` as a subprocess for the tests: the real command on a free loopback port, in front
of a simulator, its stderr collected."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from corral.sim import SimulatorThread
from tests._support import ROOT

_LIMITED = (
    "import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (%d, %d)); "
    "sys.argv[0] = 'corral'; runpy.run_module('corral.cli', run_name='__main__')"
)


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    lines: list[str]
    reader: threading.Thread

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def stop(self, sig: signal.Signals = signal.SIGINT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.reader.join(timeout=10)
            assert self.process.stderr is not None
            self.process.stderr.close()
        return code


def start_server(
    sim: SimulatorThread,
    store: Path,
    *options: str,
    token: str | None = None,
    open_files: int | None = None,
) -> Server:
    """``corral serve`` on a free loopback port in front of ``sim``; ``open_files``: its limit on
    open files (soft and hard, as a machine with ``ulimit -n`` set that low would have)."""
    # With a limit, a few lines of Python set it and then run the command in the same process.
    limited = ["-c", _LIMITED % (open_files, open_files)] if open_files else ["-m", "corral.cli"]
    argv = [sys.executable, *limited, "serve", "--port", "0", "--base-url", sim.url,
            "--model", "sim-1", "--store", str(store), *options]  # fmt: skip
    env = {key: value for key, value in os.environ.items() if key != "CORRAL_SERVE_TOKEN"}
    if token is not None:
        env["CORRAL_SERVE_TOKEN"] = token
    process = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            match = re.search(r"listening on (http://\S+/)", line)
            if match:
                found.append(match[1])
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    server = Server("", process, lines, reader)
    if not ready.wait(60) or not found:
        server.stop(signal.SIGKILL)
        raise AssertionError(f"corral serve did not start:\n{server.log}")
    server.url = found[0]
    return server
