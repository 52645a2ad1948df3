"""Names and values as MLflow takes them: flattened params, valid keys, named files, file digests.

A file's digest is its sha256 from `biomol_dl.hashing` (cached by path, size and mtime, so a
large feature file is hashed once, not once per consumer); files over BIOMOL_DL_HASH_MAX_MB
(default 8192) are not hashed and tagged as skipped.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from biomol_dl import hashing
from biomol_dl.tracking.settings import ENV_HASH_MAX_MB, _env_float


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _key(name: Any) -> str:
    """A valid MLflow param / metric / tag key (alphanumerics, _ - . space / :)."""
    key = re.sub(r"[^\w.\-/ :]", "_", str(name))[:250] or "_"
    norm = posixpath.normpath(key)
    if norm != key or norm == "." or norm.startswith(("..", "/")):
        key = re.sub(r"^[./]+", "_", key.replace("/", "_"))
    return key


def _files(obj: Any) -> dict[str, str | list[str]]:
    """Named files: {name: path or [paths]}, a list of paths (keyed by position) or one path."""
    if obj is None:
        return {}
    if isinstance(obj, (str, os.PathLike)):
        return {"0": str(obj)}
    items = obj.items() if isinstance(obj, Mapping) else enumerate(obj)
    out: dict[str, str | list[str]] = {}
    for name, value in items:
        if str(name).startswith("_"):
            continue
        if isinstance(value, (str, os.PathLike)):
            out[str(name)] = str(value)
        else:
            out[str(name)] = [str(v) for v in value]
    return out


def _each_file(files: Mapping[str, str | list[str]]) -> Iterator[tuple[str, str]]:
    for name, value in files.items():
        if isinstance(value, str):
            yield name, value
        else:
            for i, path in enumerate(value):
                yield f"{name}.{i}", path


def file_sha256(path: str | Path) -> str | None:
    """sha256 of a file (biomol_dl.hashing, cached by path, size and mtime); None for files over
    BIOMOL_DL_HASH_MAX_MB."""
    return hashing.sha256_file_within(path, _env_float(ENV_HASH_MAX_MB, 8192) * 2**20)


def _digest_tag(path: str) -> str:
    p = Path(path)
    if p.is_dir():
        return "directory"
    if not p.exists():
        return "missing"
    return file_sha256(p) or f"skipped (over {os.environ.get(ENV_HASH_MAX_MB, 8192)} MB)"


def _yaml(obj: Any) -> str:
    import yaml

    return yaml.safe_dump(json.loads(json.dumps(obj, default=str)), sort_keys=False)
