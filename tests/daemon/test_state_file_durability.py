"""spec.statePath is written atomically and durably, and a failed write leaves nothing behind."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from hpscaler.daemon import persistence
from hpscaler.daemon.persistence import write_atomically


def test_the_file_and_its_directory_are_fsynced_before_and_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state" / "state.json"
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        steps.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        steps.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(persistence.os, "fsync", fsync)
    monkeypatch.setattr(persistence.os, "replace", replace)
    write_atomically(path, '{"outOfCapacity": []}')
    assert steps == ["fsync-file", "rename", "fsync-dir"]
    assert path.read_text() == '{"outOfCapacity": []}'
    assert os.listdir(path.parent) == ["state.json"]


@pytest.mark.parametrize("failing", ["fsync", "replace", "write"])
def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / "state.json"
    write_atomically(path, "old")

    def full_disk(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    if failing == "write":
        monkeypatch.setattr(persistence.os, "fdopen", lambda fd, *a, **k: _FullDiskFile(fd))
    else:
        monkeypatch.setattr(persistence.os, failing, full_disk)
    for _ in range(5):  # one attempt every few seconds on a full disk: nothing piles up
        with pytest.raises(OSError, match="No space left"):
            write_atomically(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]


class _FullDiskFile:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> _FullDiskFile:
        return self

    def __exit__(self, *_: object) -> None:
        os.close(self.fd)

    def write(self, _: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")
