"""Real servers for tests: a private redis-server or nats-server on a free port, stoppable mid-test.

Safe under pytest-xdist: each worker starts its own servers, and a server counts as started only when
the one answering on the port is the process we started (its pid for Redis, its name for NATS). If
another worker took the free port first, a port we picked is replaced by a new one; a port the caller
gave (a restart on the same port) fails loudly instead of silently sharing another test's server.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

#: Attempts at a fresh free port when another process takes the one we picked.
_PORT_ATTEMPTS = 5


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
        self._picked = port is None
        self.port = port or free_port()
        self.aof = aof
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        for attempt in range(_PORT_ATTEMPTS if self._picked else 1):
            if attempt:
                self.port = free_port()
            if self._start_once():
                self._picked = False  # a restart must come back on the same port, or fail
                return self
        raise RuntimeError(f"redis-server did not start: port {self.port} is taken by another process")

    def _start_once(self) -> bool:
        """Start on `self.port`; False when the port turned out to be taken by another process."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        proc = self.proc = subprocess.Popen(
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
            if proc.poll() is not None:  # it could not bind: another process has the port
                self.proc = None
                return False
            pid = _redis_pid(self.port)
            if pid == proc.pid and _redis_pongs(self.port):  # PING waits out loading the AOF; INFO does not
                return True
            if pid is not None and pid != proc.pid:  # someone else answers there; ours will exit
                self.stop()
                if not self._picked:
                    raise RuntimeError(f"port {self.port} is taken by another redis-server (pid {pid})")
                return False
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


def _redis_pid(port: int) -> int | None:
    """The pid of the redis-server answering on the port, or None while nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
            conn.sendall(b"INFO server\r\n")
            data = b""
            while b"process_id:" not in data or not data.split(b"process_id:", 1)[1].count(b"\r\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    return None
                data += chunk
    except OSError:
        return None
    return int(data.split(b"process_id:", 1)[1].split(b"\r\n", 1)[0])


def _redis_pongs(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


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
        self._picked = port is None
        self.port = port or free_port()
        self.jetstream = jetstream
        #: Unique, so that the INFO greeting tells our server from another one on the same port.
        self.name = f"rt-test-{uuid.uuid4().hex[:12]}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsProcess:
        for attempt in range(_PORT_ATTEMPTS if self._picked else 1):
            if attempt:
                self.port = free_port()
            if self._start_once():
                self._picked = False  # a restart must come back on the same port, or fail
                return self
        raise RuntimeError(f"nats-server did not start: port {self.port} is taken by another process")

    def _start_once(self) -> bool:
        """Start on `self.port`; False when the port turned out to be taken by another process."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        proc = self.proc = subprocess.Popen(
            [
                self.binary,
                *(["-js", "-sd", str(self.workdir)] if self.jetstream else []),
                *("-a", "127.0.0.1", "-p", str(self.port), "--server_name", self.name),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # The server greets every client with INFO once it listens, which it does after JetStream is up.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.proc = None
                return False
            name = _nats_name(self.port)
            if name == self.name:
                return True
            if name is not None and name != self.name:
                self.kill()
                if not self._picked:
                    raise RuntimeError(f"port {self.port} is taken by another nats-server ({name})")
                return False
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


def _nats_name(port: int) -> str | None:
    """The name in the INFO greeting of the nats-server on the port, or None while nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
            data = b""
            while b"\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return None
                data += chunk
    except OSError:
        return None
    line = data.split(b"\r\n", 1)[0]
    if not line.startswith(b"INFO "):
        return None
    name: str = json.loads(line[5:]).get("server_name", "")
    return name
