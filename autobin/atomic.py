"""Atomic file writes shared by every layer that writes files (training, zoo, workflows).

A file is written to a temporary file in its destination directory, flushed and fsynced, then
moved into place with ``os.replace`` (and the directory fsynced), so a crash never leaves a
truncated file: readers see either the previous complete file or the new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def _file_mode() -> int:
    """Permissions of a newly created file under the current umask (mkstemp uses 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so a rename inside it is durable (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` atomically: ``write(fh)`` fills a temp file that then replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Atomically write ``data`` as indented JSON (non-JSON values via ``str``)."""
    text = json.dumps(data, indent=2, default=str) + "\n"
    return atomic_write(path, lambda fh: fh.write(text.encode()))


OWNER_FILE = ".owner"
"""In a temporary folder: ``<host> <pid>`` of the process writing it."""
STALE_AFTER_S = 24 * 3600
"""A temporary folder without a readable owner is stale after this long."""


def write_owner(folder: Path) -> None:
    """Record this process (host and pid) as the writer of the temporary ``folder``."""
    (folder / OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n", encoding="utf-8")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_gone(folder: Path, stale_after_s: float = STALE_AFTER_S) -> bool:
    """Whether the temporary ``folder`` was left by a process that no longer runs.

    True when its owner (same host) has exited, or, without a readable owner (another host,
    or killed before writing it), when the folder is older than ``stale_after_s``.
    """
    try:
        host, pid = (folder / OWNER_FILE).read_text(encoding="utf-8").split()
        if host == socket.gethostname():
            return not _alive(int(pid))
    except (OSError, ValueError):
        pass
    try:
        return time.time() - folder.stat().st_mtime > stale_after_s
    except OSError:
        return False
