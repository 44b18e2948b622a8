"""Reproducer files: `lpim check` never overwrites a file lpim did not write.

`lpim.testing._reproducer.write_reproducers` signs each file it writes (its second line records a
digest of the content) and replaces a file only while it is its own unchanged reproducer; any
other file under that name (the user's, or a reproducer the user edited) survives byte for byte,
and the reproducer goes to the next free name. A `--reproducer-dir` that cannot be used is a
usage error (exit 2), reported after the check's report and failure were printed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from lpim._errors import UsageError
from lpim.batch import LaneBatch
from lpim.cli import main
from lpim.testing import EncoderPropertyError
from lpim.testing._reproducer import (
    REPRODUCER_MARKER,
    is_lpim_reproducer,
    reproducer_filename,
    write_reproducers,
)

RAISES = "lpim.zoo.misbehaving:MISBEHAVING['raises'].factory"  # fails `runs`
MEAN_OVER_SLOTS = "lpim.zoo:BUGS['mean_over_slots'].factory"  # fails `matches_unpadded`
QUICK = ["--dtype", "float32", "--max-examples", "3", "--property", "matches_unpadded"]
USERS = b"# my own script, not lpim's\r\nprint('hello')\n\x00binary tail\xff"


def check(target: str, *extra: str) -> int:
    return main(["check", target, *QUICK, *extra])


# -- through the command -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "name"),
    [(RAISES, "runs_float32.py"), (MEAN_OVER_SLOTS, "matches_unpadded_float32.py")],
)
def test_a_users_file_in_the_folder_survives_byte_for_byte(
    target: str,
    name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_bytes(USERS)
    assert check(target, "--reproducer-dir", ".") == 1
    assert (tmp_path / name).read_bytes() == USERS
    beside = tmp_path / name.replace(".py", "_2.py")
    assert is_lpim_reproducer(beside)
    out = capsys.readouterr().out
    assert f"python {beside.name}  ({name} there is not lpim's, or was edited: kept)" in out
    # the next run replaces its own reproducer beside the user's file, and adds no third one
    assert check(target, "--reproducer-dir", ".") == 1
    assert (tmp_path / name).read_bytes() == USERS
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, beside.name])


def test_lpims_own_old_reproducers_are_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "lpim-reproducers"
    (old,) = write_reproducers([failure(marker="  # an older run's")], folder)
    assert old.name == "runs_float32.py" and is_lpim_reproducer(old)
    assert check(RAISES) == 1
    assert [p.name for p in folder.iterdir()] == ["runs_float32.py"]
    new = old.read_text()
    assert "an older run's" not in new and "MISBEHAVING['raises']" in new
    assert is_lpim_reproducer(old)
    assert f"python {Path('lpim-reproducers', 'runs_float32.py')}\n" in capsys.readouterr().out


def test_an_edited_reproducer_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "lpim-reproducers"
    assert check(RAISES) == 1
    written = folder / "runs_float32.py"
    edited = written.read_text() + "print('my debugging line')\n"
    written.write_text(edited)
    assert not is_lpim_reproducer(written)
    capsys.readouterr()
    assert check(RAISES) == 1
    assert written.read_text() == edited
    assert is_lpim_reproducer(folder / "runs_float32_2.py")
    assert "(runs_float32.py there is not lpim's, or was edited: kept)" in capsys.readouterr().out


def test_a_reproducer_dir_that_is_a_file_exits_2_after_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_bytes(USERS)
    assert check(RAISES, "--reproducer-dir", "notes.txt") == 2
    captured = capsys.readouterr()
    assert "property 'runs' failed" in captured.out and "Traceback" not in captured.out
    assert "reproducer(s) written" not in captured.out
    assert "--reproducer-dir 'notes.txt': it is a file, not a folder" in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    assert (tmp_path / "notes.txt").read_bytes() == USERS


def test_a_reproducer_dir_that_cannot_be_created_exits_2_after_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_bytes(USERS)
    assert check(RAISES, "--reproducer-dir", "notes.txt/reproducers") == 2
    captured = capsys.readouterr()
    assert "property 'runs' failed" in captured.out
    assert "--reproducer-dir 'notes.txt/reproducers': it cannot be created" in captured.err
    assert (tmp_path / "notes.txt").read_bytes() == USERS


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root writes into a read-only folder anyway: chmod cannot make one for root",
)
def test_a_read_only_reproducer_dir_exits_2_after_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert check(RAISES, "--reproducer-dir", "read-only") == 2
    finally:
        folder.chmod(0o755)
    captured = capsys.readouterr()
    assert "property 'runs' failed" in captured.out
    assert "--reproducer-dir 'read-only': it cannot be written into" in captured.err
    assert list(folder.iterdir()) == []


def test_a_folder_that_refuses_writes_exits_2_naming_what_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The read-only case as root sees it too: writes refused with EACCES (simulated)."""
    import lpim.testing._reproducer as module

    monkeypatch.chdir(tmp_path)
    (written,) = write_reproducers([failure()], tmp_path / "out")
    write_new = module._write_new

    def refuse_after(allowed: int) -> None:
        calls: list[Path] = []

        def refusing(path: Path, text: str) -> None:
            calls.append(path)
            if len(calls) > allowed:
                raise PermissionError(13, "Permission denied", str(path))
            write_new(path, text)

        monkeypatch.setattr(module, "_write_new", refusing)

    refuse_after(1)
    with pytest.raises(UsageError, match=r"cannot be written into \(Permission denied\)") as info:
        write_reproducers([failure("finite"), failure()], tmp_path / "out")
    assert f"written before that: {tmp_path / 'out' / 'finite_float32.py'}" in str(info.value)
    refuse_after(0)
    assert check(RAISES, "--reproducer-dir", "out") == 2
    captured = capsys.readouterr()
    assert "property 'runs' failed" in captured.out
    assert "--reproducer-dir 'out': it cannot be written into (Permission denied)" in captured.err
    assert written.read_text().endswith("print('reproducing')\n")  # left as it was


# -- write_reproducers itself ------------------------------------------------------------------


def failure(property_name: str = "runs", marker: str = "") -> EncoderPropertyError:
    example = LaneBatch(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, dtype=torch.bool))
    error = EncoderPropertyError(property_name, "seen", example)
    error.reproducer = (
        f"# lpim 0.1.0 reproducer: property {property_name!r} at torch.float32\n"
        f"print('reproducing'){marker}\n"
    )
    return error


def test_written_files_are_signed_and_put_sys_path_first(tmp_path: Path) -> None:
    (path,) = write_reproducers([failure()], tmp_path / "new" / "folder", sys_path=["/here"])
    assert path == tmp_path / "new" / "folder" / "runs_float32.py"
    lines = path.read_text().splitlines()
    assert REPRODUCER_MARKER.match(lines[0])
    assert lines[1].startswith("# lpim wrote this file (sha256 ")
    assert lines[2:4] == [
        "import sys",
        "sys.path[:0] = ['/here']  # where your code was imported from",
    ]
    assert is_lpim_reproducer(path)


def test_two_failures_under_one_name_are_both_written(tmp_path: Path) -> None:
    paths = write_reproducers([failure(marker="  # 1"), failure(marker="  # 2")], tmp_path)
    assert [p.name for p in paths] == ["runs_float32.py", "runs_float32_2.py"]
    assert "# 1" in paths[0].read_text() and "# 2" in paths[1].read_text()


@pytest.mark.parametrize("kind", ["folder", "symlink", "unsigned marker", "not utf-8"])
def test_nothing_but_lpims_own_unchanged_file_is_replaced(tmp_path: Path, kind: str) -> None:
    name = tmp_path / reproducer_filename(failure())
    if kind == "folder":
        name.mkdir()
    elif kind == "symlink":
        target = tmp_path / "target.py"
        write_reproducers([failure()], tmp_path / "elsewhere")
        target.write_bytes((tmp_path / "elsewhere" / "runs_float32.py").read_bytes())
        name.symlink_to(target)
    elif kind == "unsigned marker":  # looks like a reproducer, but lpim did not sign it
        name.write_text("# lpim 0.1.0 reproducer: property 'runs' at torch.float32\nx = 1\n")
    else:
        name.write_bytes(USERS)
    before = name.read_bytes() if name.is_file() else None
    (path,) = write_reproducers([failure()], tmp_path)
    assert path.name == "runs_float32_2.py"
    if before is not None:
        assert name.read_bytes() == before
    if kind == "symlink":
        assert name.is_symlink() and is_lpim_reproducer(target)


def test_an_unusable_folder_is_a_usage_error_naming_it_and_the_option(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match=r"--reproducer-dir '.*file': it is a file, not a folder"):
        write_reproducers([failure()], blocker, option="--reproducer-dir")
    with pytest.raises(UsageError, match=r"directory '.*file/sub': it cannot be created"):
        write_reproducers([failure()], blocker / "sub")
