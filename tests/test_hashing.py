"""biomol_dl.hashing: one file hasher with one cache; biomol_dl.runtime: one peak-memory function."""

import hashlib
import io
import os

import pytest

from biomol_dl import hashing, runtime


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(hashing.ENV_HASH_CACHE, str(tmp_path / "cache.sqlite"))
    hashing.clear_cache()
    yield
    hashing.clear_cache()


def test_file_hash_is_the_plain_sha256(tmp_path):
    path = tmp_path / "a.bin"
    data = os.urandom(3 * hashing.BLOCK_BYTES + 17)
    path.write_bytes(data)
    assert hashing.sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert hashing.sha256_file(str(path)) == hashlib.sha256(data).hexdigest()


def test_unchanged_file_is_read_once_per_process(tmp_path, monkeypatch):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 1000)
    reads = []
    real = hashing._digest_blocks
    monkeypatch.setattr(hashing, "_digest_blocks", lambda h, *a: reads.append(1) or real(h, *a))
    first = hashing.sha256_file(path)
    assert hashing.sha256_file(tmp_path / "." / "a.bin") == first  # same resolved path
    assert len(reads) == 1
    stat = path.stat()
    path.write_bytes(b"y" * 1000)  # same size, mtime restored: the cache cannot tell
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert hashing.sha256_file(path) == first
    path.write_bytes(b"y" * 1001)
    assert hashing.sha256_file(path) == hashlib.sha256(b"y" * 1001).hexdigest()
    assert len(reads) == 2


def test_large_files_are_remembered_on_disk_across_processes(tmp_path, monkeypatch):
    monkeypatch.setattr(hashing, "PERSIST_MIN_BYTES", 100)
    big, small = tmp_path / "big.bin", tmp_path / "small.bin"
    big.write_bytes(b"b" * 200)
    small.write_bytes(b"s" * 50)
    expected = hashing.sha256_file(big), hashing.sha256_file(small)
    hashing.clear_cache()  # a new process: only the disk layer is left
    monkeypatch.setattr(hashing, "_digest_blocks", lambda h, *a: "read again")
    assert hashing.sha256_file(big) == expected[0]
    assert hashing.sha256_file(small) == "read again"


def test_unusable_disk_cache_means_hashing_again(tmp_path, monkeypatch):
    monkeypatch.setattr(hashing, "PERSIST_MIN_BYTES", 1)
    (tmp_path / "not_a_db").mkdir()
    monkeypatch.setenv(hashing.ENV_HASH_CACHE, str(tmp_path / "not_a_db"))
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc")
    assert hashing.sha256_file(path) == hashlib.sha256(b"abc").hexdigest()


def test_cache_file_location(tmp_path, monkeypatch):
    assert hashing.cache_file() == tmp_path / "cache.sqlite"
    monkeypatch.delenv(hashing.ENV_HASH_CACHE)
    monkeypatch.setenv(hashing.ENV_CACHE_DIR, str(tmp_path / "c"))
    assert hashing.cache_file() == tmp_path / "c" / "sha256_cache.sqlite"


def test_size_limited_helpers(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"z" * 10)
    digest = hashlib.sha256(b"z" * 10).hexdigest()
    assert hashing.sha256_file_within(path, 10) == digest
    assert hashing.sha256_file_within(path, 9) is None
    assert hashing.fingerprint(path, 10) == digest
    stat = path.stat()
    assert hashing.fingerprint(path, 9) == f"size=10;mtime_ns={stat.st_mtime_ns}"


def test_manifest_bytes_json_and_copy(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"1")
    b.write_bytes(b"2")
    lines = f"a.bin {hashlib.sha256(b'1').hexdigest()}\nb.bin {hashlib.sha256(b'2').hexdigest()}\n"
    assert hashing.sha256_manifest([a, b]) == hashlib.sha256(lines.encode()).hexdigest()
    assert hashing.sha256_bytes(b"q") == hashlib.sha256(b"q").hexdigest()
    assert (
        hashing.sha256_json({"b": 1, "a": a})
        == hashlib.sha256(('{"a": "' + str(a) + '", "b": 1}').encode()).hexdigest()
    )
    data = os.urandom(2 * hashing.BLOCK_BYTES + 5)
    out = io.BytesIO()
    assert hashing.copy_hashed(io.BytesIO(data), out) == hashlib.sha256(data).hexdigest()
    assert out.getvalue() == data


def test_peak_memory_is_the_max_rss_without_cuda():
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    expected = peak / 2**20 if sys.platform == "darwin" else peak / 2**10
    assert runtime.peak_memory_mb() == pytest.approx(expected, rel=0.05)
    assert runtime.peak_memory_mb("cpu") == pytest.approx(expected, rel=0.05)
    assert runtime.peak_memory_mb() > 1
