"""tunelab.core.files: written whole, never through a link, and readable as a plain write would be."""
import os
import stat

import pytest

from tunelab.core.files import atomic_write_text


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_a_new_file_gets_the_permissions_the_umask_gives_a_plain_write(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "report.md", "x")
        with open(tmp_path / "plain.md", "w") as handle:
            handle.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "report.md").st_mode) == expected
    assert stat.S_IMODE(os.stat(tmp_path / "plain.md").st_mode) == expected
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_a_replaced_file_keeps_its_permissions_and_a_replaced_link_its_target(tmp_path):
    kept = tmp_path / "best.yaml"
    kept.write_text("old")
    kept.chmod(0o640)
    atomic_write_text(kept, "new")
    assert kept.read_text() == "new" and stat.S_IMODE(kept.stat().st_mode) == 0o640
    kept.chmod(0o4755)  # a setuid bit is not carried to what replaces the file
    atomic_write_text(kept, "newer")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o755
    target = tmp_path / "theirs.txt"
    target.write_text("theirs")
    target.chmod(0o600)
    link = tmp_path / "tunelab.json"
    link.symlink_to(target)
    atomic_write_text(link, "ours")
    assert not link.is_symlink() and link.read_text() == "ours"
    assert target.read_text() == "theirs" and stat.S_IMODE(target.stat().st_mode) == 0o600
