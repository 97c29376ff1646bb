"""Output files: links are never followed, writes are atomic, nothing is overwritten unless
asked, and two writers cannot share a folder."""

import os

import pytest

from hwsim.errors import HwsimError
from hwsim.report.plan_report import check_writable
from hwsim.safe_write import LOCK_NAME, check_targets, folder_lock, write_atomic
from validation import profile_writer


def test_a_dangling_link_in_the_report_folder_is_refused(tmp_path):
    """Regression: a dangling report.md link made hwsim create its target outside the folder."""
    out, outside = tmp_path / "out", tmp_path / "elsewhere.md"
    out.mkdir()
    (out / "report.md").symlink_to(outside)
    with pytest.raises(HwsimError, match="symbolic link"):
        check_writable(out, overwrite=True)
    assert not outside.exists()


def test_force_does_not_overwrite_a_file_outside_through_a_link(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "precious.txt"
    out.mkdir()
    outside.write_text("keep me")
    (out / "report.html").symlink_to(outside)
    with pytest.raises(HwsimError, match="symbolic link"):
        check_writable(out, overwrite=True)
    assert outside.read_text() == "keep me"


def test_a_linked_plots_folder_is_refused(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "plots").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(HwsimError, match="symbolic link"):
        check_writable(out, overwrite=True)


def test_existing_files_need_overwrite(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("old")
    with pytest.raises(HwsimError, match="would overwrite.*--force"):
        check_targets([target])
    assert check_targets([target], overwrite=True) == [target]


def test_write_atomic_replaces_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    write_atomic(target, "new content")
    assert target.read_text() == "new content"
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_write_atomic_replaces_a_link_instead_of_following_it(tmp_path):
    outside, link = tmp_path / "outside.txt", tmp_path / "link.txt"
    outside.write_text("keep me")
    link.symlink_to(outside)
    write_atomic(link, "mine")
    assert outside.read_text() == "keep me"
    assert not link.is_symlink() and link.read_text() == "mine"


def test_a_second_writer_is_refused_while_the_folder_is_held(tmp_path):
    with folder_lock(tmp_path / "out") as held:
        assert (held / LOCK_NAME).exists()
        second = folder_lock(tmp_path / "out")
        with pytest.raises(HwsimError, match="being written by another hwsim run"):
            second.__enter__()
    assert not (tmp_path / "out" / LOCK_NAME).exists()


def test_calibrate_checks_the_report_beside_the_profile(tmp_path):
    """Regression: <out>.calibration.json was written without the check --out gets."""
    out = tmp_path / "mine.yaml"
    (tmp_path / "mine.calibration.json").write_text("{}")
    with pytest.raises(HwsimError, match="mine.calibration.json"):
        profile_writer.check_writable(out)
    assert profile_writer.check_writable(out, force=True) == out


def test_write_atomic_gives_new_files_the_usual_permissions(tmp_path):
    """mkstemp makes 0600 files; a report must be as readable as any file the user creates."""
    umask = os.umask(0o022)
    try:
        target = write_atomic(tmp_path / "report.md", "x")
        assert target.stat().st_mode & 0o777 == 0o644
        target.chmod(0o600)
        write_atomic(target, "y")  # a replaced file keeps its own mode
        assert target.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(umask)
