"""Zoo upkeep: rebuild a lost ``index.json`` from the entries, clean up interrupted publishes.

``index.json`` is the zoo's trusted record (see :mod:`autobin.zoo.index`). If it is deleted the
entries are still on disk, each with its ``SHA256SUMS``: :func:`rebuild_index` checks every
entry directory against its own checksums, validates its config and packed weights, and writes
a new index of the entries that pass. The rebuilt index trusts what the entries say about
themselves, so it detects corruption (and truncation) but not deliberate tampering from before
the rebuild; entries that fail are left out and reported, never deleted.

A publish writes into a temporary ``.publish-<name>-*`` folder (and a replacement moves the old
entry to ``.replaced-<name>-*`` while the index is updated). A process killed in between leaves
such a folder behind; :func:`clean_interrupted` removes those whose publishing process is gone.
:func:`autobin.zoo.publish` calls it first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..atomic import OWNER_FILE, owner_gone, write_owner
from .config import CONFIG_FILE, read_config
from .errors import ZooError
from .format import WEIGHTS_FILE, read_packed
from .index import (
    CHECKSUMS_FILE,
    check_name,
    check_zoo_dir,
    empty_index,
    entry_folders,
    index_lock,
    parse_checksums,
    sha256_file,
    verify_files,
    write_index,
)

PUBLISH_PREFIX = ".publish-"
REPLACED_PREFIX = ".replaced-"


def _is_stale(folder: Path) -> bool:
    if folder.name.startswith(REPLACED_PREFIX):
        return True  # only exists inside a commit, which holds the index lock we hold now
    return owner_gone(folder)


def clean_interrupted(zoo_dir: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary folders of publishes that were interrupted; return them.

    A ``.publish-*`` folder is removed when the process that wrote it (same host) is no longer
    running, or, without a readable owner, when it is older than a day; ``.replaced-*``
    folders are always leftovers. Holds the index lock, so no commit is in flight.
    """
    zoo = check_zoo_dir(zoo_dir)
    if not zoo.is_dir():
        return []
    removed: list[Path] = []
    with index_lock(zoo):
        for folder in sorted(zoo.iterdir()):
            if not folder.is_dir() or not folder.name.startswith((PUBLISH_PREFIX, REPLACED_PREFIX)):
                continue
            if _is_stale(folder):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed


def _entry_record(entry_dir: Path) -> dict[str, Any]:
    """The index record of one entry directory, after checking it; raises ZooError if bad."""
    files = parse_checksums(entry_dir / CHECKSUMS_FILE)
    for required in (CONFIG_FILE, WEIGHTS_FILE):
        if required not in files:
            raise ZooError(f"{entry_dir / CHECKSUMS_FILE} lists no sha256 for {required!r}")
    verify_files(entry_dir, files, str(entry_dir / CHECKSUMS_FILE))
    config = read_config(entry_dir / CONFIG_FILE)
    read_packed(entry_dir / WEIGHTS_FILE)
    if config["name"] != entry_dir.name:
        raise ZooError(
            f"{entry_dir / CONFIG_FILE}: names the entry {config['name']!r}, but its folder is "
            f"{entry_dir.name!r}"
        )
    files[CHECKSUMS_FILE] = sha256_file(entry_dir / CHECKSUMS_FILE)
    return {
        "path": entry_dir.name,
        "files": files,
        "metrics": config.get("metrics") or {},
        "created": config.get("created"),
    }


def rebuild_index(zoo_dir: str | os.PathLike[str] = "zoo") -> dict[str, Any]:
    """Write a new ``index.json`` from the entry folders' own checksums and configs.

    Every folder of ``zoo_dir`` that holds a ``SHA256SUMS`` is checked (every file against
    its sha256, the config validated, the packed weights readable); the entries that pass make
    up the new index, which replaces the old one atomically. Nothing is deleted.

    Returns:
        ``{"indexed": [names], "skipped": {name: reason}, "removed_temporary": [paths]}``.

    Raises:
        ZooError: ``zoo_dir`` is not a directory.
    """
    zoo = check_zoo_dir(zoo_dir)
    if not zoo.is_dir():
        raise ZooError(f"zoo directory {zoo} does not exist; nothing to index")
    removed = clean_interrupted(zoo)
    index, skipped = empty_index(), {}
    for folder in entry_folders(zoo):
        try:
            check_name(folder.name)
            index["models"][folder.name] = _entry_record(folder)
        except (ZooError, ValueError, OSError) as exc:
            skipped[folder.name] = str(exc)
    with index_lock(zoo):
        write_index(zoo, index)
    return {
        "indexed": sorted(index["models"]),
        "skipped": skipped,
        "removed_temporary": [str(p) for p in removed],
    }


__all__ = ["OWNER_FILE", "clean_interrupted", "rebuild_index", "write_owner"]
