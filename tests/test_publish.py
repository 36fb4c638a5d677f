"""The staging copy of the published file: a copy-on-write clone where the file system has
one, else a byte copy; either way the same bytes, and the published file untouched."""

from __future__ import annotations

import errno
import os

import pytest

from pipelines.core import publish


def test_clone_or_copy_gives_the_same_bytes(tmp_path):
    source, target = tmp_path / "w.duckdb", tmp_path / "w.duckdb.building"
    data = os.urandom(3 * 1024 * 1024 + 17)
    source.write_bytes(data)
    target.write_bytes(b"stale staging file from a killed run")
    cloned = publish.clone_or_copy(source, target)
    assert isinstance(cloned, bool)
    assert target.read_bytes() == data == source.read_bytes()


def test_a_file_system_without_clones_falls_back_to_a_copy(tmp_path, monkeypatch):
    def no_clone(fd, request, arg):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(publish.fcntl, "ioctl", no_clone)
    source, target = tmp_path / "a", tmp_path / "b"
    source.write_bytes(b"abc" * 1000)
    assert publish.clone_or_copy(source, target) is False
    assert target.read_bytes() == source.read_bytes()


def test_another_error_is_raised_and_leaves_no_partial_file(tmp_path, monkeypatch):
    def broken(fd, request, arg):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(publish.fcntl, "ioctl", broken)
    source, target = tmp_path / "a", tmp_path / "b"
    source.write_bytes(b"abc")
    with pytest.raises(OSError, match="Input/output"):
        publish.clone_or_copy(source, target)
    assert not target.exists()
