"""A private `redis-server` on a unix socket in the data folder, for when no Redis is configured.

The server keeps nothing on disk (`--save "" --appendonly no`) and listens on no TCP port, only on a
socket only its owner may open. It runs in its own session, so a Ctrl-C aimed at RoundTable does not
kill the bus under a graceful shutdown; a server left behind by a crashed process answers on the same
socket, and the next start reuses it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from engine.errors import BusUnavailable, ConfigError

#: Longest unix socket path Linux accepts (`sun_path` is 108 bytes with the closing NUL).
SOCKET_PATH_LIMIT = 107
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def redis_server_binary() -> str | None:
    """The `redis-server` on PATH, or None when it is not installed."""
    return shutil.which("redis-server")


def socket_path_for(data_dir: Path) -> Path:
    """Where the server of a data folder listens: `<data_dir>/redis.sock` when that path is short enough.

    A unix socket path may not exceed 107 bytes. For a deeper data folder the socket goes to
    `<tmp>/roundtable-<hash of the folder>/redis.sock` instead: the hash keeps it stable, so a later
    process still finds (and reuses) the same server.
    """
    folder = data_dir.resolve()
    path = folder / "redis.sock"
    if len(os.fsencode(path)) <= SOCKET_PATH_LIMIT:
        return path
    digest = hashlib.sha256(os.fsencode(folder)).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"roundtable-{digest}" / "redis.sock"
    if len(os.fsencode(path)) > SOCKET_PATH_LIMIT:
        raise ConfigError(
            f"no short enough place for the redis socket: {path} exceeds {SOCKET_PATH_LIMIT} bytes"
        )
    return path


def _private_dir(path: Path) -> None:
    """Create a folder only we may enter, refusing one that someone else planted (a shared tmp)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if path.is_symlink() or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ConfigError(f"{path} is not a private folder of this user; remove it and start again")


def _answers(path: Path) -> bool:
    """Whether a Redis server answers PING on the socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            sock.connect(os.fspath(path))
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock, so two processes never start two servers on one socket."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class PrivateRedis:
    """A `redis-server` owned by one data folder.

    `start` and `stop` block (for well under a second); from async code run them in a thread.
    A server this instance did not start, because it was already answering, is left running by
    `stop`: another process may be using it.

    Args:
        data_dir: the folder for the socket (see `socket_path_for`), the pid file and the log.
        binary: the `redis-server` to run; by default the one on PATH.
    """

    def __init__(self, data_dir: Path, *, binary: str | None = None) -> None:
        self.data_dir = data_dir
        self.socket_path = socket_path_for(data_dir)
        self.pidfile = data_dir / "redis.pid"
        self.logfile = data_dir / "redis.log"
        self._binary = binary
        self._process: subprocess.Popen[bytes] | None = None
        #: True when `start` found a server already answering and reused it.
        self.reused = False

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def started(self) -> bool:
        """Whether this instance started the server it stands for (and so stops it)."""
        return self._process is not None

    def answers(self) -> bool:
        """Whether the server answers PING now."""
        return _answers(self.socket_path)

    def start(self) -> None:
        """Start the server, or reuse the one already answering on the socket; return when it answers.

        Raises:
            ConfigError: redis-server is not installed.
            BusUnavailable: the server exited or did not answer within the start timeout.
        """
        if self._process is not None and self._process.poll() is None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.socket_path.parent != self.data_dir.resolve():
            _private_dir(self.socket_path.parent)
        with _locked(self.data_dir / "redis.lock"):
            if self.answers():
                self.reused = True
                return
            self.reused = False
            self._spawn()

    def _spawn(self) -> None:
        binary = self._binary or redis_server_binary()
        if binary is None:
            raise ConfigError(
                "redis-server is not installed; install it (apt install redis-server) or set a Redis URL"
            )
        self.socket_path.unlink(missing_ok=True)  # left by a server that died without cleaning up
        command = [
            binary,
            "--port", "0",
            "--unixsocket", os.fspath(self.socket_path),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", os.fspath(self.data_dir.resolve()),
            "--pidfile", os.fspath(self.pidfile.resolve()),
            "--logfile", os.fspath(self.logfile.resolve()),
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.answers():
            code = self._process.poll()
            if code is not None:
                self._process = None
                raise BusUnavailable(f"redis-server exited with code {code} at start: {self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise BusUnavailable(
                    f"redis-server did not answer on {self.socket_path} within {START_TIMEOUT_S:.0f}s: "
                    f"{self._log_tail()}"
                )
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server if this instance started it (SIGTERM, then SIGKILL); otherwise do nothing."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.socket_path.unlink(missing_ok=True)

    def _log_tail(self) -> str:
        try:
            lines = self.logfile.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(lines[-3:]) or "empty log"

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
