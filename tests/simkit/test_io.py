"""Atomic writes: all or nothing, and the usual permissions."""

from __future__ import annotations

import json
import stat

import pytest

from simkit.io import atomic_directory, atomic_write, write_json


def test_failure_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "data.json"
    write_json(path, {"a": 1})
    with pytest.raises(RuntimeError), atomic_write(path, "w") as fh:
        fh.write('{"partial": ')
        raise RuntimeError("crash mid-write")
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]


def test_new_file_is_world_readable_and_mode_is_kept(tmp_path):
    path = tmp_path / "sub" / "x.bin"
    with atomic_write(path) as fh:
        fh.write(b"abc")
    assert path.read_bytes() == b"abc"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    path.chmod(0o600)
    with atomic_write(path) as fh:
        fh.write(b"def")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes() == b"def"


def test_bad_mode(tmp_path):
    with pytest.raises(ValueError, match="mode"), atomic_write(tmp_path / "x", "a"):
        pass


def test_atomic_directory_swaps_whole_folders(tmp_path):
    target = tmp_path / "pipe"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("one")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "w.bin").write_bytes(b"x")
        (tmp / "sub" / "w.bin").chmod(0o600)
        assert not target.exists()  # nothing under the final name until the end
    assert (target / "a.txt").read_text() == "one"
    assert stat.S_IMODE((target / "sub" / "w.bin").stat().st_mode) == 0o644
    with atomic_directory(target) as tmp:  # replaces the old folder as a whole
        (tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "c.txt").write_text("half")
        raise RuntimeError("crash mid-save")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no leftovers
