"""The data folder: created private, and kept private, because it holds every session and the bus."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from engine.errors import ConfigError

#: Only the owner may list or enter the data folder.
PRIVATE_DIR: Final = 0o700
#: Only the owner may read or write the files in it.
PRIVATE_FILE: Final = 0o600
#: The files RoundTable keeps in the data folder: the SQLite database with its WAL and shared-memory
#: files, and the private redis-server's pid file, log and start lock.
PRIVATE_FILES: Final = (
    "roundtable.db",
    "roundtable.db-wal",
    "roundtable.db-shm",
    "redis.pid",
    "redis.log",
    "redis.lock",
)


def prepare_data_dir(path: Path) -> None:
    """Create the data folder with mode 0700, and make it and the files we keep there private.

    A folder or file that another user owns is left as it is: we may not change it, and it is theirs.

    Raises:
        ConfigError: the path is a file, or the folder cannot be created; the message says which.
    """
    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"the data folder {path} is a file, not a folder; move it, or set ROUNDTABLE_DATA_DIR"
        )
    try:
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the data folder {path} ({exc.strerror or exc}); "
            "set ROUNDTABLE_DATA_DIR to a folder you may write"
        ) from None
    secure_data_dir(path)


def secure_data_dir(path: Path) -> None:
    """Restrict the data folder to 0700 and our files in it to 0600, where we own them.

    Call it again after a service creates its files there (SQLite, redis-server): they are created
    under the process's umask, usually 0644.
    """
    _restrict(path, PRIVATE_DIR)
    for name in PRIVATE_FILES:
        _restrict(path / name, PRIVATE_FILE)


def _restrict(path: Path, mode: int) -> None:
    try:
        info = path.lstat()
    except OSError:  # absent (not created yet) or unreadable: nothing of ours to change
        return
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) == mode:
        return
    try:
        os.chmod(path, mode)
    except OSError:  # e.g. a read-only file system; the folder's own mode still guards the files
        return
