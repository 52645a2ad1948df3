"""sha256 of files, bytes and JSON-able values: the one hasher of the library, with one cache.

Every file hash goes through `sha256_file`: the file is read in 1 MiB blocks, and the hex digest is
cached by (resolved path, size, mtime_ns). The cache has two layers behind that one key:

- in memory, for every file, so an unchanged file is hashed once per process;
- on disk, for files of `PERSIST_MIN_BYTES` or more (model weights, feature tensors), where a
  look-up is cheaper than reading the file again: a small SQLite file named by
  $BIOMOL_DL_HASH_CACHE (tracking sets it to results/mlflow/sha256_cache.sqlite under the
  workflow's working directory), else $BIOMOL_DL_CACHE/sha256_cache.sqlite (default
  ~/.cache/biomol_dl). It is a cache only: a locked, read-only or corrupt file means hashing again.

A file rewritten with the same size and mtime is not noticed (as with make or Snakemake's mtime
checks); a changed size or mtime always is.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import Any, BinaryIO

from biomol_dl.logutil import get

log = get(__name__)

BLOCK_BYTES = 1 << 20
PERSIST_MIN_BYTES = 16 << 20
ENV_HASH_CACHE = "BIOMOL_DL_HASH_CACHE"
ENV_CACHE_DIR = "BIOMOL_DL_CACHE"

FileKey = tuple[str, int, int]
_MEMORY: dict[FileKey, str] = {}


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex sha256 of a JSON-able value: keys sorted, anything else as str()."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode())


def file_key(path: str | Path) -> FileKey:
    """The cache key of a file: (resolved path, size, mtime_ns)."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return str(resolved), stat.st_size, stat.st_mtime_ns


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's content, read in 1 MiB blocks; cached (see the module docstring)."""
    key = file_key(path)
    if key in _MEMORY:
        return _MEMORY[key]
    persist = key[1] >= PERSIST_MIN_BYTES
    value = _disk_cache(key) if persist else None
    if value is None:
        with open(key[0], "rb") as handle:
            value = _digest_blocks(handle)
        if persist:
            _disk_cache(key, value)
    _MEMORY[key] = value
    return value


def sha256_file_within(path: str | Path, max_bytes: float) -> str | None:
    """`sha256_file`, or None for a file larger than max_bytes (not read at all)."""
    if Path(path).stat().st_size > max_bytes:
        return None
    return sha256_file(path)


def fingerprint(path: str | Path, max_bytes: float) -> str:
    """The file's sha256, or "size=<bytes>;mtime_ns=<ns>" for a file larger than max_bytes."""
    stat = Path(path).stat()
    if stat.st_size > max_bytes:
        return f"size={stat.st_size};mtime_ns={stat.st_mtime_ns}"
    return sha256_file(path)


def sha256_manifest(files: Iterable[str | Path]) -> str:
    """Hex sha256 of the "<file name> <file sha256>\\n" lines of several files, in the order given."""
    lines = "".join(f"{Path(f).name} {sha256_file(f)}\n" for f in files)
    return sha256_bytes(lines.encode())


def copy_hashed(source: BinaryIO, target: BinaryIO) -> str:
    """Copy a readable binary stream to a writable one in 1 MiB blocks; the hex sha256 copied."""
    return _digest_blocks(source, target)


def clear_cache() -> None:
    """Forget the in-memory layer (the on-disk one checks size and mtime by itself)."""
    _MEMORY.clear()


def cache_file() -> Path:
    """Where the on-disk layer lives (see the module docstring)."""
    named = os.environ.get(ENV_HASH_CACHE)
    if named:
        return Path(named)
    base = os.environ.get(ENV_CACHE_DIR) or Path.home() / ".cache" / "biomol_dl"
    return Path(base) / "sha256_cache.sqlite"


def _digest_blocks(handle: BinaryIO, copy_to: BinaryIO | None = None) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(BLOCK_BYTES), b""):
        digest.update(block)
        if copy_to is not None:
            copy_to.write(block)
    return digest.hexdigest()


def _disk_cache(key: FileKey, value: str | None = None) -> str | None:
    # A cache only: any problem with it (locked, read-only, corrupt) means hashing again.
    db = cache_file()
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(db, timeout=30)) as conn, conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS files "
                "(path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, sha256 TEXT)"
            )
            if value is not None:
                conn.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", (*key, value))
                return value
            row = conn.execute(
                "SELECT sha256 FROM files WHERE path = ? AND size = ? AND mtime_ns = ?", key
            ).fetchone()
            return row[0] if row else None
    except (sqlite3.Error, OSError) as exc:
        log.debug("sha256 cache %s unusable: %s", db, exc)
        return None
