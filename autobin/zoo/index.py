"""The zoo index ``<zoo_dir>/index.json``, sha256 checksums and atomic file writes.

Index layout::

    {
      "format": "autobin.zoo.index",
      "format_version": 1,
      "models": {
        "<name>": {
          "path": "<name>",                      # entry directory, relative to zoo_dir
          "files": {"config.json": "<sha256>", "model.safetensors": "<sha256>", ...},
          "metrics": {"top1": 63.1},
          "created": "2025-01-01T00:00:00+00:00"
        }
      }
    }

Every entry directory also holds ``SHA256SUMS`` (``sha256sum -c`` format) listing its other
files; it is what :func:`autobin.zoo.load` checks when an entry is loaded by directory path
rather than by name. The index is the trusted record (it detects tampering with any file,
``SHA256SUMS`` included); ``SHA256SUMS`` alone detects corruption and truncation only, since
whoever edits a file can edit it too.

Writes are atomic: a temporary file in the same directory is written, fsynced and moved over
the target with ``os.replace``; index updates hold an advisory lock (``.index.lock``) where the
platform has ``fcntl``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..atomic import atomic_write
from .errors import ZooFormatError, ZooIntegrityError, ZooNameError

INDEX_FILE = "index.json"
INDEX_FORMAT = "autobin.zoo.index"
INDEX_VERSION = 1
CHECKSUMS_FILE = "SHA256SUMS"
LOCK_FILE = ".index.lock"
# matched whole (re.fullmatch): with re.match, "$" also matches before a final newline
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid zoo entry name, else raise :class:`ZooNameError`.

    Valid names are 1-128 characters of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit
    (they become directory names, so no ``/``, no ``..`` and no leading dot).
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise ZooNameError(
            f"invalid zoo model name {name!r}: use 1-128 characters from A-Z, a-z, 0-9, '.', "
            "'_' and '-', starting with a letter or digit, without '..' (e.g. "
            "'resnet18-adabin-imagenet')"
        )
    return name


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`autobin.atomic.atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def write_file_synced(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a new file and fsync it (for files inside a not-yet-published dir)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def dumps_json(obj: Any) -> bytes:
    """Stable, human-readable JSON bytes (sorted keys, 2-space indent, trailing newline)."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def empty_index() -> dict[str, Any]:
    """A new, empty index."""
    return {"format": INDEX_FORMAT, "format_version": INDEX_VERSION, "models": {}}


def check_zoo_dir(zoo_dir: str | os.PathLike[str]) -> Path:
    """Return ``zoo_dir`` as a Path; raise if it exists but is not a directory.

    Raises:
        ZooFormatError: ``zoo_dir`` is a file (or anything but a directory).
    """
    zoo = Path(zoo_dir)
    if zoo.exists() and not zoo.is_dir():
        raise ZooFormatError(
            f"zoo directory {zoo} is a file, not a directory; pass the zoo's directory "
            "(zoo_dir= / --zoo-dir)"
        )
    return zoo


def read_index(zoo_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate ``<zoo_dir>/index.json``; an absent index is an empty zoo.

    Raises:
        ZooFormatError: the index is not valid JSON or not an autobin zoo index.
        ZooIntegrityError: the index is absent but entry folders exist (it was deleted).
    """
    check_zoo_dir(zoo_dir)
    path = Path(zoo_dir) / INDEX_FILE
    if not path.exists():
        orphans = entry_folders(zoo_dir)
        if orphans:
            shown = ", ".join(p.name for p in orphans[:5]) + (", ..." if len(orphans) > 5 else "")
            raise ZooIntegrityError(
                f"{path} is missing but {zoo_dir} holds {len(orphans)} entry folder(s) ({shown}); "
                f"rebuild the index from their checksums with `autobin zoo --zoo-dir {zoo_dir} "
                "reindex` (autobin.zoo.rebuild_index)"
            )
        return empty_index()
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ZooFormatError(f"{path}: cannot read the zoo index ({e})") from e
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise ZooFormatError(f"{path}: not an autobin zoo index (format != {INDEX_FORMAT!r})")
    if index.get("format_version") != INDEX_VERSION:
        raise ZooFormatError(
            f"{path}: zoo index version {index.get('format_version')!r} is not supported "
            f"(supports {INDEX_VERSION}); upgrade autobin"
        )
    models = index.get("models")
    if not isinstance(models, dict):
        raise ZooFormatError(f"{path}: 'models' must be an object of entries by name")
    for name, entry in models.items():
        _check_entry(path, name, entry)
    return index


def entry_folders(zoo_dir: str | os.PathLike[str]) -> list[Path]:
    """The folders of ``zoo_dir`` that hold an entry (a ``SHA256SUMS``), sorted by name."""
    zoo = Path(zoo_dir)
    if not zoo.is_dir():
        return []
    folders = (f for f in zoo.iterdir() if f.is_dir() and not f.name.startswith("."))
    return sorted(f for f in folders if (f / CHECKSUMS_FILE).exists())


def _check_entry(path: Path, name: str, entry: Any) -> None:
    where = f"{path}: entry {name!r}"
    if not isinstance(entry, dict):
        raise ZooFormatError(f"{where} must be an object")
    rel = entry.get("path")
    if not isinstance(rel, str) or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise ZooFormatError(f"{where} has an invalid 'path' {rel!r} (relative, inside the zoo)")
    files = entry.get("files")
    if not isinstance(files, dict) or not files:
        raise ZooFormatError(f"{where} needs 'files', an object of filename -> sha256")
    for fname, digest in files.items():
        if "/" in fname or "\\" in fname or fname in ("", ".", ".."):
            raise ZooFormatError(f"{where} lists an invalid file name {fname!r}")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise ZooFormatError(
                f"{where}: sha256 of {fname!r} is {digest!r}, not 64 lowercase hex digits"
            )


def write_index(zoo_dir: str | os.PathLike[str], index: Mapping[str, Any]) -> None:
    """Atomically replace ``<zoo_dir>/index.json`` with ``index``."""
    atomic_write_bytes(Path(zoo_dir) / INDEX_FILE, dumps_json(dict(index)))


@contextlib.contextmanager
def index_lock(zoo_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive advisory lock on the zoo's index (where ``fcntl`` exists)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        yield
        return
    with open(Path(zoo_dir) / LOCK_FILE, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def render_checksums(files: Mapping[str, str]) -> bytes:
    """``SHA256SUMS`` content: one ``<sha256>  <filename>`` line per file, sorted by name."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(files.items())).encode()


def parse_checksums(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse a ``SHA256SUMS`` file into ``{filename: sha256}``.

    Raises:
        ZooIntegrityError: the file is missing or malformed (names the file and line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ZooIntegrityError(f"{path}: cannot read the checksums file ({e})") from e
    files: dict[str, str] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        name = name.lstrip("*")
        if not sep or not _HEX64.fullmatch(digest) or not name or "/" in name:
            raise ZooIntegrityError(
                f"{path}:{i}: malformed checksum line {line!r} (expected '<sha256>  <file>')"
            )
        files[name] = digest
    if not files:
        raise ZooIntegrityError(f"{path}: the checksums file lists no files")
    return files


def verify_files(entry_dir: str | os.PathLike[str], files: Mapping[str, str], source: str) -> None:
    """Check every file of ``files`` in ``entry_dir`` against its recorded sha256.

    Args:
        entry_dir: the entry directory.
        files: ``{filename: sha256}``.
        source: where the recorded hashes come from (named in the error).

    Raises:
        ZooIntegrityError: a file is missing or its sha256 differs; the message names the file.
    """
    entry_dir = Path(entry_dir)
    for name, expected in sorted(files.items()):
        path = entry_dir / name
        if not path.is_file():
            raise ZooIntegrityError(f"{path}: file listed in {source} is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise ZooIntegrityError(
                f"{path}: sha256 mismatch (file has {actual}, {source} records {expected}); "
                f"the file is corrupt, truncated or was modified after publishing"
            )


__all__ = [
    "CHECKSUMS_FILE",
    "INDEX_FILE",
    "INDEX_FORMAT",
    "INDEX_VERSION",
    "atomic_write_bytes",
    "check_name",
    "check_zoo_dir",
    "dumps_json",
    "empty_index",
    "entry_folders",
    "index_lock",
    "parse_checksums",
    "read_index",
    "render_checksums",
    "sha256_file",
    "verify_files",
    "write_file_synced",
    "write_index",
]
