"""PtyPort, the shared wire of the serial emulators: a real pyserial host on a real pty behind
a stable symlink, through unplug, replug and close."""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from devices.pty import PtyPort


@pytest.fixture
def port() -> Iterator[PtyPort]:
    p = PtyPort("dev", prefix="kiosk-test-pty-")
    yield p
    p.close()


def _read_master(fd: int, n: int, timeout: float = 2.0) -> bytes:
    got = b""
    while len(got) < n:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            break
        got += os.read(fd, n - len(got))
    return got


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_the_path_is_a_symlink_to_the_current_pty_and_a_real_tty(port: PtyPort) -> None:
    assert not port.plugged and not os.path.lexists(port.path)
    path = port.plug()
    assert path == port.path and port.plugged
    assert Path(path).is_symlink()
    assert os.readlink(path) == port.pty_path and port.pty_path.startswith("/dev/pts/")
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        assert os.isatty(fd)
    finally:
        os.close(fd)


def test_a_pyserial_host_sees_bytes_written_on_the_master_and_the_master_sees_its_bytes(
        port: PtyPort) -> None:
    port.plug()
    assert port.master_fd is not None
    with serial.Serial(port.path, 115200, timeout=2) as host:
        os.write(port.master_fd, b"\x00\x00\xff\r\n\x03\x7f")
        assert host.read(7) == b"\x00\x00\xff\r\n\x03\x7f"
        host.write(b"\x55\x55\r\x00")
        host.flush()
        assert _read_master(port.master_fd, 4) == b"\x55\x55\r\x00"


def test_raw_mode_passes_cr_untouched_before_the_host_sets_its_own_mode(port: PtyPort) -> None:
    port.plug()
    assert port.master_fd is not None
    # a plain os.open does not touch termios: only the port's raw mode keeps CR a CR
    fd = os.open(port.path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(port.master_fd, b"ab\rcd\r")
        assert _read_master(fd, 6) == b"ab\rcd\r"
        # and no echo: what the host writes is not sent back to it
        os.write(fd, b"xy\r")
        assert _read_master(port.master_fd, 3) == b"xy\r"
        ready, _, _ = select.select([fd], [], [], 0.1)
        assert ready == []
    finally:
        os.close(fd)


def test_unplug_makes_the_hosts_read_and_write_fail_and_the_path_vanish(port: PtyPort) -> None:
    port.plug()
    host = serial.Serial(port.path, 115200, timeout=1)
    try:
        port.unplug()
        assert not port.plugged and port.master_fd is None and port.pty_path == ""
        assert not os.path.lexists(port.path)
        with pytest.raises(serial.SerialException):
            host.read(1)
        with pytest.raises(serial.SerialException):
            host.write(b"\x00" * 64)
            host.flush()
    finally:
        host.close()
    with pytest.raises(serial.SerialException):
        serial.Serial(port.path, 115200, timeout=1)


def test_replug_brings_a_working_pty_back_at_the_same_path(port: PtyPort) -> None:
    path = port.plug()
    port.unplug()
    assert port.replug() == path
    assert os.readlink(path) == port.pty_path
    assert port.master_fd is not None
    with serial.Serial(path, 115200, timeout=2) as host:
        os.write(port.master_fd, b"back")
        assert host.read(4) == b"back"


def test_plug_and_replug_while_plugged_keep_the_same_pty(port: PtyPort) -> None:
    port.plug()
    fd, pts = port.master_fd, port.pty_path
    assert port.plug() == port.path and port.replug() == port.path
    assert (port.master_fd, port.pty_path) == (fd, pts)


def test_close_removes_the_temp_dir_and_the_port_cannot_be_plugged_again() -> None:
    p = PtyPort("dev", prefix="kiosk-test-pty-")
    p.plug()
    folder = Path(p.path).parent
    assert folder.is_dir()
    p.close()
    assert not folder.exists() and not p.plugged
    p.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        p.plug()


def test_context_manager_plugs_on_entry_and_cleans_up_on_exit() -> None:
    with PtyPort("dev", prefix="kiosk-test-pty-") as p:
        assert p.plugged and os.path.islink(p.path)
        folder = Path(p.path).parent
    assert not folder.exists()


def test_many_unplug_replug_cycles_from_several_threads_leak_no_fds(port: PtyPort) -> None:
    port.plug()
    before = _open_fds()
    errors: list[OSError | RuntimeError] = []

    def churn() -> None:
        try:
            for _ in range(50):
                port.unplug()
                port.replug()
        except (OSError, RuntimeError) as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert port.plugged and os.readlink(port.path) == port.pty_path
    assert _open_fds() == before  # exactly one pty pair open, as before the churn


def test_a_shared_lock_holds_off_unplug_until_the_owner_lets_go() -> None:
    lock = threading.RLock()
    p = PtyPort("dev", prefix="kiosk-test-pty-", lock=lock)
    try:
        p.plug()
        done = threading.Event()
        with lock:
            def pull() -> None:
                p.unplug()
                done.set()

            t = threading.Thread(target=pull)
            t.start()
            assert not done.wait(0.2)  # the owner is mid-exchange: the fds stay valid
            assert p.plugged
        assert done.wait(2)
        t.join(2)
        assert not p.plugged
    finally:
        p.close()
