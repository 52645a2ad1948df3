"""Where a dataset's raw table comes from: a local path, a URL pinned by sha256, or a file shipped
inside an installed Python package; for the `fetch` rule and for anyone loading a dataset by hand.

A `source` config entry is one of

    {type: path, path: data/x.csv, format?: csv|tsv|fasta|sdf|parquet, sha256?, member?}
    {type: url, url: https://...|file://..., sha256: <64 hex>, format?, member?, mirror_path?}
    {type: package, package: B3DB, resource: B3DB_regression.tsv, format?, sha256?}
    {parts: [{<one of the above>, part: train}, {..., part: test}]}

plus the read options of `io.read_raw_table` (header, skip_rows, columns for CSV/TSV;
fasta_header for FASTA; smiles_property for SDF). `member` picks one file inside a .zip. Each
part of `parts` needs a `part` name: it becomes the value of the combined table's `part` column
(what a predefined split reads).

Compression is never a format: gzip, bz2, xz and one-file zip archives are recognised by their
first bytes whenever a file is read (io.read_bytes), for every source type, so `hiv.csv.gz` is a
CSV. The format is `format:` when given, else the file name's extension after any compression
extension (`.csv.gz` -> csv, `.sd.gz` -> sdf), else, for a local file (path, package), its
content (io.sniff_format), else csv. The fetched raw file keeps the source's bytes unchanged
(compressed or not); its provenance records the compression found. Package resources are located through the import system's *spec* of the package,
which finds its folder without running the package's code (B3DB's `__init__` imports pandas and
more; modlamp's imports scikit-learn).

URL sources never trust the network: a local mirror folder (config `mirror`, overridden by the
environment variable BIOMOL_DL_MIRROR) is consulted first, downloads are cached under
`<cache_dir>/<sha256>/<basename>`, and every file, mirror copy and cached download alike, must
match the pinned sha256 or the fetch fails.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from biomol_dl.hashing import copy_hashed, sha256_file
from biomol_dl.io import (
    FORMATS,
    READ_ERRORS_ATTR,
    DataError,
    compression_of,
    format_from_name,
    read_head,
    read_raw_table,
    sniff_format,
)
from biomol_dl.logutil import get

log = get(__name__)

MIRROR_ENV = "BIOMOL_DL_MIRROR"
DOWNLOAD_TIMEOUT_S = 60
READ_OPTIONS = ("header", "skip_rows", "columns", "fasta_header", "smiles_property")


def mirror_folders(mirror: str | Path | Iterable[str | Path] | None) -> list[Path]:
    """The mirror folders to consult, in order: $BIOMOL_DL_MIRROR (os.pathsep-separated) when set,
    else the config value (one folder or a list)."""
    env = os.environ.get(MIRROR_ENV, "")
    if env.strip():
        return [Path(p) for p in env.split(os.pathsep) if p.strip()]
    if not mirror:
        return []
    if isinstance(mirror, str | Path):
        return [Path(mirror)]
    return [Path(m) for m in mirror if m]


def source_label(source: dict) -> str:
    """A short human name for a (single) source: its path, URL or package:resource."""
    kind = source.get("type")
    if kind == "path":
        label = str(source.get("path"))
    elif kind == "url":
        label = str(source.get("url"))
    elif kind == "package":
        label = f"package {source.get('package')}:{source.get('resource')}"
    else:
        label = f"source {source!r}"
    return f"{label}!{source['member']}" if source.get("member") else label


def display_name(provenance: dict | None, fallback: str | Path) -> str:
    """The name messages about a fetched raw file use: the user's own path (as written in the
    config), URL or `package P:resource` (with `!member` for a zip member; `a + b` for parts),
    from the provenance `fetch` wrote; `fallback` (the raw file) without one."""
    if not provenance or not provenance.get("origin"):
        return str(fallback)
    if provenance.get("type") == "path":
        return str(provenance.get("file") or provenance["origin"])
    member = provenance.get("member")
    return f"{provenance['origin']}!{member}" if member else str(provenance["origin"])


def source_format(source: dict) -> str:
    """csv | tsv | fasta | sdf | parquet: `format` when given, else from the file (or zip member)
    name's extension, compression extensions skipped; else from a local file's content; else
    csv. Always csv for a multi-part source (the parts are concatenated into one CSV).
    DataError (one line, naming the file) for an unsupported format such as xlsx or json."""
    if "parts" in source:
        return "csv"
    fmt = source.get("format")
    if fmt is None:
        location = source.get("member") or source.get("path") or source.get("resource") or ""
        if not location and source.get("url"):
            location = urllib.parse.urlparse(source["url"]).path
        fmt = format_from_name(str(location)) if location else None
        if fmt is None:
            fmt = _sniff_local(source) or "csv"
    if fmt not in FORMATS:
        raise DataError(
            f"{source_label(source)}: unsupported format {fmt!r}; supported: {', '.join(FORMATS)}"
        )
    return fmt


def _sniff_local(source: dict) -> str | None:
    """The content's format for a local file (path, package; no zip member), else None: a URL's
    download may not exist yet, and the format must not depend on the download cache."""
    if source.get("member"):
        return None
    if source.get("type") == "path":
        path = Path(str(source.get("path") or ""))
    elif source.get("type") == "package" and source.get("package") and source.get("resource"):
        spec = (
            importlib.util.find_spec(str(source["package"]))
            if "." not in source["package"]
            else None
        )
        folders = list(spec.submodule_search_locations or []) if spec else []
        found = [Path(f, str(source["resource"])) for f in folders]
        path = next((p for p in found if p.is_file()), Path(""))
    else:
        return None
    if not path.is_file():
        return None
    label = source_label(source)
    return sniff_format(read_head(path, label), label)


def read_options(source: dict) -> dict[str, Any]:
    """The io.read_raw_table options (header, skip_rows, columns) for the *fetched* raw file.

    A multi-part source's raw file is the CSV that `fetch_dataset` wrote, with a plain header, so
    the parts' own options do not apply to it.
    """
    if "parts" in source:
        return {}
    return {k: source[k] for k in READ_OPTIONS if source.get(k) is not None}


def resolve_source(
    source: dict, *, mirror: str | Iterable[str] | None, cache_dir: str | Path
) -> Path:
    """A local, sha256-verified file for a single source (a zip member is extracted first)."""
    path, _ = _resolve(source, mirror=mirror, cache_dir=Path(cache_dir))
    return path


def fetch_dataset(
    source: dict,
    out_raw: str | Path,
    out_provenance: str | Path,
    *,
    mirror: str | Iterable[str] | None,
    cache_dir: str | Path,
) -> dict:
    """Write the raw table to `out_raw` and its provenance JSON to `out_provenance`; return it.

    A single source's bytes are copied unchanged. A multi-part source's parts are read, checked to
    have the same columns, and written as one CSV with an added column `part`.
    """
    out_raw, out_provenance, cache_dir = Path(out_raw), Path(out_provenance), Path(cache_dir)
    out_raw.parent.mkdir(parents=True, exist_ok=True)
    fmt = source_format(source)
    if "parts" in source:
        provenance = _fetch_parts(source, out_raw, mirror=mirror, cache_dir=cache_dir)
    else:
        path, provenance = _resolve(source, mirror=mirror, cache_dir=cache_dir)
        shutil.copyfile(path, out_raw)
        provenance["compression"] = compression_of(path)
    provenance.update(
        format=fmt, raw=str(out_raw), raw_sha256=sha256_file(out_raw), bytes=out_raw.stat().st_size
    )
    out_provenance.parent.mkdir(parents=True, exist_ok=True)
    out_provenance.write_text(json.dumps(provenance, indent=2) + "\n")
    log.info("fetched %s -> %s (%d bytes)", provenance["origin"], out_raw, provenance["bytes"])
    return provenance


def _fetch_parts(source: dict, out_raw: Path, *, mirror: Any, cache_dir: Path) -> dict[str, Any]:
    import pandas as pd

    parts = source["parts"]
    if not isinstance(parts, list) or not parts:
        raise DataError("source parts: expected a non-empty list of sources")
    # Read options given beside `parts` apply to every part unless the part overrides them.
    shared = {k: source[k] for k in READ_OPTIONS if k in source}
    tables, records, first, read_errors, offset = [], [], None, [], 0
    for i, part in enumerate(parts):
        if "parts" in part:
            raise DataError(f"source parts[{i}]: parts cannot be nested")
        name = part.get("part")
        if not name:
            raise DataError(f"source parts[{i}] ({source_label(part)}): missing `part` name")
        path, record = _resolve(part, mirror=mirror, cache_dir=cache_dir)
        fmt = source_format(part)
        options = {**shared, **read_options(part)}
        shown = display_name(record, path)
        table = read_raw_table(path, fmt, display_name=shown, **options)
        if "part" in table.columns:
            raise DataError(f"{shown}: already has a column named 'part'")
        if first is None:
            first = (shown, list(table.columns))
        elif list(table.columns) != first[1]:
            raise DataError(
                f"{shown}: columns {list(table.columns)} differ from those of "
                f"{first[0]} {first[1]}; parts must share one header"
            )
        table["part"] = str(name)
        for i, (column, value, reason) in sorted(table.attrs.get(READ_ERRORS_ATTR, {}).items()):
            read_errors.append(
                {"row": offset + i + 1, "column": column, "value": value,
                 "reason": "{}: {}, {}".format(*reason.split(": ", 1)[:1], shown,
                                               reason.split(": ", 1)[-1])}
            )  # fmt: skip
        offset += len(table)
        tables.append(table)
        records.append({**record, "part": str(name), "rows": len(table)})
    combined = pd.concat(tables, ignore_index=True)
    combined.to_csv(out_raw, index=False)
    return {
        "type": "parts",
        "origin": " + ".join(r["origin"] for r in records),
        "parts": records,
        "rows": len(combined),
        "read_errors": read_errors,
    }


def _resolve(source: dict, *, mirror: Any, cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    """(local verified file, provenance record) for one single source."""
    if not isinstance(source, dict):
        raise DataError(f"source: expected a mapping, got {source!r}")
    if "parts" in source:
        raise DataError("source with parts: resolve each part (fetch_dataset does this)")
    kind = source.get("type")
    if kind == "path":
        path, record = _resolve_path(source)
    elif kind == "url":
        path, record = _resolve_url(source, mirror=mirror, cache_dir=cache_dir)
    elif kind == "package":
        path, record = _resolve_package(source)
    else:
        raise DataError(f"source {source!r}: type must be path, url or package (or give parts)")
    member = source.get("member")
    if member:
        path = _extract_member(path, str(member), record["sha256"], cache_dir, record["file"])
        record.update(
            member=member, member_sha256=sha256_file(path), file=f"{record['file']}!{member}"
        )
    return path, record


def _resolve_path(source: dict) -> tuple[Path, dict[str, Any]]:
    if not source.get("path"):
        raise DataError(f"source {source!r}: type path needs `path`")
    written = str(source["path"])  # messages name the path as the user wrote it
    path = Path(written)
    if path.is_dir():
        raise DataError(f"{written}: is a folder, not a file (source type path)")
    if not path.is_file():
        raise DataError(f"{written}: file not found (source type path, relative to {Path.cwd()})")
    actual = _verify(path, source.get("sha256"), written)
    return path, {"type": "path", "origin": written, "file": written, "sha256": actual}


def _resolve_package(source: dict) -> tuple[Path, dict[str, Any]]:
    package, resource = source.get("package"), source.get("resource")
    if not package or not resource:
        raise DataError(f"source {source!r}: type package needs `package` and `resource`")
    if "." in package:
        # find_spec("a.b") imports "a"; the contract is to locate without running package code.
        raise DataError(
            f"package {package}:{resource}: give the top-level package name and put the "
            f"sub-folder in resource (e.g. package: {package.split('.')[0]}, "
            f"resource: {'/'.join(package.split('.')[1:])}/{resource})"
        )
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise DataError(
            f"package {package}:{resource}: Python package {package!r} is not installed in this "
            "environment (install the distribution that ships it)"
        )
    locations = list(spec.submodule_search_locations or [])
    if not locations:
        raise DataError(f"package {package}:{resource}: {package!r} is a module, not a package")
    rel = PurePosixPath(resource)
    if rel.is_absolute() or ".." in rel.parts:
        raise DataError(f"package {package}:{resource}: resource must be a path inside the package")
    for folder in locations:
        candidate = Path(folder, *rel.parts)
        if candidate.is_file():
            label = f"package {package}:{resource}"
            actual = _verify(candidate, source.get("sha256"), label)
            record = {
                "type": "package",
                "origin": label,
                "file": str(candidate),
                "sha256": actual,
                "package": package,
                "resource": resource,
                **distribution(package),
            }
            return candidate, record
    raise DataError(f"package {package}:{resource}: no file {resource!r} in {', '.join(locations)}")


@functools.cache
def distribution(package: str) -> dict[str, str]:
    """Which installed distribution provides `package` and its version (read from metadata only;
    {} when none does). Fetch's provenance records it, and a new version re-runs fetch.

    The answer of `importlib.metadata.packages_distributions()` (the first distribution whose
    top_level.txt, or else RECORD, lists the package), found without building that whole map: it
    costs about 1.3 s, and every Snakemake start asks this for each package source (rule params)."""
    from importlib import metadata

    for dist in metadata.distributions():
        if _provides(dist, package):
            return {"distribution": dist.metadata["Name"], "version": dist.version}
    return {}


def _provides(dist, package: str) -> bool:
    top_level = dist.read_text("top_level.txt")
    if top_level is not None:
        return package in top_level.split()
    for line in (dist.read_text("RECORD") or "").splitlines():
        path = line.split(",", 1)[0]
        if path.split("/", 1)[0] == package or path == f"{package}.py":
            return True
    return False


def _resolve_url(source: dict, *, mirror: Any, cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    url, expected = source.get("url"), source.get("sha256")
    if not url:
        raise DataError(f"source {source!r}: type url needs `url`")
    if not expected or len(str(expected)) != 64:
        raise DataError(f"{url}: a url source must pin its content with sha256 (64 hex digits)")
    expected = str(expected).lower()
    basename = PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    basename = basename or "download"
    record: dict[str, Any] = {"type": "url", "origin": url, "mirror_used": False}

    relative = source.get("mirror_path") or basename
    for folder in mirror_folders(mirror):
        candidate = folder / relative
        if candidate.is_file():
            # A mirror copy with the wrong content is an error, not a reason to download.
            _verify(candidate, expected, str(candidate))
            log.info("%s: using mirror copy %s", url, candidate)
            record.update(mirror_used=True, file=str(candidate), sha256=expected)
            return candidate, record

    cached = cache_dir / expected / basename
    if cached.is_file():
        actual = sha256_file(cached)
        if actual != expected:
            raise DataError(
                f"{cached}: sha256 mismatch for cached download of {url}: expected {expected}, "
                f"got {actual}; delete the file to download it again"
            )
        log.info("%s: using cached download %s", url, cached)
        record.update(file=str(cached), sha256=expected, cached=True)
        return cached, record

    _download(url, cached, expected, relative, mirror)
    record.update(file=str(cached), sha256=expected, cached=False)
    return cached, record


def _download(url: str, target: Path, expected: str, mirror_relative: str, mirror: Any) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s", url)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                actual = copy_hashed(response, out)
    except (urllib.error.URLError, OSError, ValueError) as err:
        tmp.unlink(missing_ok=True)
        reason = err if isinstance(err, urllib.error.HTTPError) else getattr(err, "reason", err)
        folders = ", ".join(map(str, mirror_folders(mirror))) or "none configured"
        raise DataError(
            f"{url}: download failed ({' '.join(str(reason).split())}); without network, put the "
            f"file at <mirror>/{mirror_relative} in a mirror folder (config `mirror` or "
            f"{MIRROR_ENV}=<folder>; consulted: {folders})"
        ) from None
    if actual != expected:
        bad = target.with_name(target.name + ".sha256-mismatch")
        tmp.replace(bad)
        raise DataError(
            f"{url}: sha256 mismatch: expected {expected}, got {actual} (download kept as {bad})"
        )
    tmp.replace(target)


def _verify(path: Path, expected: str | None, label: str) -> str:
    """The file's sha256; DataError when `expected` is given and differs."""
    actual = sha256_file(path)
    if expected and actual != str(expected).lower():
        raise DataError(f"{label}: sha256 mismatch: expected {expected}, got {actual}")
    return actual


def _extract_member(
    archive: Path, member: str, archive_sha: str, cache_dir: Path, label: str
) -> Path:
    rel = PurePosixPath(member)
    if rel.is_absolute() or ".." in rel.parts:
        raise DataError(f"{label}: member {member!r} must be a relative path inside the archive")
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            if member not in names:
                files = [n for n in names if not n.endswith("/")]
                shown = ", ".join(files[:12]) + (" ..." if len(files) > 12 else "")
                raise DataError(f"{label}: no member {member!r} in the zip; it holds: {shown}")
            target = cache_dir / archive_sha / "members" / Path(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            # Extract through a temporary name so an interrupted run never leaves half a file.
            fd, tmp_name = tempfile.mkstemp(dir=target.parent, suffix=".part")
            with os.fdopen(fd, "wb") as out, zf.open(member) as src:
                shutil.copyfileobj(src, out)
            Path(tmp_name).replace(target)
            return target
    except zipfile.BadZipFile:
        raise DataError(
            f"{label}: not a zip archive, but the source names a member {member!r}"
        ) from None
