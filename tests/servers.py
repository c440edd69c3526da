"""Real servers for tests: a private redis-server on a free port, stoppable mid-test."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A local TCP port nothing listens on: bound a moment ago, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisProcess:
    """A redis-server child process on 127.0.0.1:port, for one test session or one test.

    With `aof`, every write is in the append-only file (fsynced before Redis answers) in `workdir`, so
    `stop` (SIGKILL) and `start` again on the same port and folder bring back all that was acknowledged.
    """

    def __init__(self, workdir: Path, port: int | None = None, *, aof: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed; run `make setup` (apt-get install redis-server)"
            )
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.aof = aof
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *(("--appendonly", "yes", "--appendfsync", "always") if self.aof else ("--appendonly", "no")),
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


def nats_server_binary() -> str | None:
    """The nats-server to run: on PATH, or where Debian's package puts it."""
    found = shutil.which("nats-server")
    if found is None and Path("/usr/sbin/nats-server").exists():
        found = "/usr/sbin/nats-server"
    return found


class NatsProcess:
    """A nats-server child process with JetStream on 127.0.0.1:port, storing in `workdir`.

    `stop` shuts it down gracefully (SIGTERM), `kill` the hard way (SIGKILL); `start` again on the
    same port and folder brings back what JetStream had stored.
    """

    def __init__(self, workdir: Path, port: int | None = None, *, jetstream: bool = True) -> None:
        binary = nats_server_binary()
        if binary is None:
            raise RuntimeError("nats-server is not installed; run `make setup` (apt-get install nats-server)")
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.jetstream = jetstream
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                self.binary,
                *(["-js", "-sd", str(self.workdir)] if self.jetstream else []),
                *("-a", "127.0.0.1", "-p", str(self.port)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # The server greets every client with INFO once it listens, which it does after JetStream is up.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    if s.recv(4).startswith(b"INFO"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"nats-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
