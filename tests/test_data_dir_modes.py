"""The data dir is 0700 and every file in it 0600 from creation (issue 6: the demo token, the
journal and the databases were 0644 in a 0755 dir). The `kiosk` command sets umask 077 before
it writes anything, and kiosk.paths makes the dir 0700 whatever the caller's umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from kiosk.paths import DATA_DIR_MODE, DataDirError, data_dir

KIOSK = [sys.executable, "-m", "kiosk.cli"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The umask a login shell usually has: what the kiosk must not rely on."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_a_real_demo_leaves_only_0600_files_in_0700_dirs(tmp_path: Path) -> None:
    data = tmp_path / "kiosk-data"
    out = subprocess.run(KIOSK + ["demo", "--headless", "--script", "pay-fee", "--json", "--data-dir", str(data)],
                         capture_output=True, text=True, timeout=180,
                         preexec_fn=lambda: os.umask(0o022))  # as from a shell with umask 022
    assert out.returncode == 0, out.stderr[-2000:]
    paths = [data, *data.rglob("*")]
    files = [p for p in paths if p.is_file()]
    assert any(p.name.startswith("journal") for p in files) and len(files) >= 4  # the demo really wrote
    loose = {str(p.relative_to(tmp_path)): oct(mode(p)) for p in paths
             if mode(p) != (DATA_DIR_MODE if p.is_dir() else 0o600)}
    assert loose == {}


def test_a_new_data_dir_is_0700_whatever_the_umask(tmp_path: Path, loose_umask: None) -> None:
    made = data_dir(tmp_path / "a" / "b" / "kiosk")
    assert made.is_dir() and mode(made) == 0o700


def test_the_cli_makes_a_new_data_dir_0700(tmp_path: Path) -> None:
    target = tmp_path / "fresh"
    out = subprocess.run(KIOSK + ["journal", "show", "--data-dir", str(target)], capture_output=True, text=True,
                         timeout=60, preexec_fn=lambda: os.umask(0o022))
    assert out.returncode == 0, out.stderr
    assert mode(target) == 0o700


def test_an_existing_dir_is_used_as_it_is(tmp_path: Path) -> None:
    # a person may point --data-dir at a dir others share (or a read-only copy): never chmod it
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    assert data_dir(shared) == shared.resolve()
    assert mode(shared) == 0o755


def test_a_file_is_not_a_data_dir(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(DataDirError) as caught:
        data_dir(path)
    assert "not a directory" in caught.value.message("en")


def test_writable_refuses_a_read_only_dir() -> None:
    # /proc/sys takes no new files, even from root
    assert data_dir("/proc/sys") == Path("/proc/sys")  # a reader may use it
    with pytest.raises(DataDirError) as caught:
        data_dir("/proc/sys", writable=True)
    assert "not writable" in caught.value.message("en")
