"""CameraScanner over real files: a still image and an MJPG video written with OpenCV,
decoded in an executor, with repeats dropped inside the window."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import zxingcpp

from devices.base import CommandTimeout, DeviceOffline, DeviceState, InvalidData
from devices.registry import driver_for
from devices.scanner import CameraScanner

BILL = "77483178001420000001770160"  # bill id 7748317800142 + payment id 1770160, zero-padded


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def _bill_barcode_frame(text: str = BILL, shift: int = 0) -> np.ndarray:
    code = np.array(zxingcpp.write_barcode_to_image(
        zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.Code128), scale=3))
    frame = np.full((480, 640, 3), 200, np.uint8)
    cv2.putText(frame, "FISH", (20, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (40, 40, 40), 3)
    h, w = code.shape
    y, x = 160, 20 + shift
    frame[y:y + h, x:x + w] = cv2.cvtColor(code, cv2.COLOR_GRAY2BGR)
    return frame


def _write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    assert writer.isOpened(), "OpenCV could not open an MJPG writer"
    for frame in frames:
        writer.write(frame)
    writer.release()


def test_a_still_image_source_reads_the_bill_barcode_once(tmp_path: Path) -> None:
    image = tmp_path / "slip.png"
    cv2.imwrite(str(image), _bill_barcode_frame())

    async def go() -> tuple[Any, dict[str, int]]:
        cam = CameraScanner("cam", source=str(image), fps=50, repeat_window_s=3.0)
        await cam.open()
        code = await cam.read(timeout=2)
        # the same slip stays in view: it must not be reported again within the window
        with pytest.raises(CommandTimeout):
            await cam.read(timeout=0.3)
        counters = dict(cam.counters)
        identity = cam.identity
        await cam.close()
        return code, counters, identity

    code, counters, identity = run(go())
    assert (code.format, code.text) == ("Code128", BILL)
    assert counters["good_scans"] == 1
    assert counters["duplicates_dropped"] >= 3
    assert identity.vendor == "zxing" and identity.firmware.startswith("zxing 3.")


def test_a_video_source_reads_codes_and_drops_repeats_until_the_window_passes(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    blank = np.full((480, 640, 3), 200, np.uint8)
    frames = [blank] * 3 + [_bill_barcode_frame(shift=s) for s in range(0, 10, 2)] + [blank] * 40
    _write_video(video, frames)

    async def go() -> tuple[list[str], dict[str, int], float]:
        cam = CameraScanner("cam", source=str(video), fps=100, repeat_window_s=0.2)
        await cam.open()
        loop = asyncio.get_running_loop()
        first = await cam.read(timeout=3)
        t0 = loop.time()
        # while the slip stays in view it is one scan; the clip loops, and after 40 blank frames
        # (longer than the window) the same bill is a new scan
        second = await cam.read(timeout=5)
        gap = loop.time() - t0
        counters = dict(cam.counters)
        await cam.close()
        return [first.text, second.text], counters, gap

    texts, counters, gap = run(go())
    assert texts == [BILL, BILL]
    assert counters["duplicates_dropped"] >= 1
    assert counters["no_reads"] >= 1  # the blank frames
    assert gap >= 0.2


def test_decoding_runs_off_the_event_loop(tmp_path: Path) -> None:
    image = tmp_path / "slip.png"
    cv2.imwrite(str(image), _bill_barcode_frame())

    async def go() -> int:
        cam = CameraScanner("cam", source=str(image), fps=200)
        await cam.open()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        t = asyncio.create_task(ticker())
        await cam.read(timeout=2)
        with pytest.raises(CommandTimeout):
            await cam.read(timeout=0.3)
        t.cancel()
        await cam.close()
        return ticks

    assert run(go()) > 20


@pytest.mark.parametrize("source", ["/nonexistent/slip.png", "/nonexistent/clip.avi", 57])
def test_a_missing_source_is_offline_at_open(source: Any) -> None:
    cam = CameraScanner("cam", source=source)
    with pytest.raises(DeviceOffline):
        run(cam.open())
    assert cam.state == DeviceState.OFFLINE


def test_the_zbar_backend_identifies_itself_and_reads_the_bill(tmp_path: Path) -> None:
    image = tmp_path / "slip.jpg"
    cv2.imwrite(str(image), _bill_barcode_frame())

    async def go() -> tuple[str, Any]:
        cam = CameraScanner("cam", source=str(image), backend="zbar", fps=50)
        await cam.open()
        code = await cam.read(timeout=2)
        await cam.close()
        return code.text, cam

    text, cam = run(go())
    assert text == BILL
    assert cam.identity.vendor == "zbar"
    assert cam.capabilities["unsupported_formats"] == ["DataMatrix", "PDF417"]


def test_camera_is_registered_for_config() -> None:
    assert driver_for("camera") is CameraScanner


def _light_on_dark_qr_frame(text: str) -> np.ndarray:
    qr = np.array(zxingcpp.write_barcode_to_image(
        zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode), scale=5))
    frame = np.full((720, 1280), 170, np.uint8)
    cv2.putText(frame, "FISH 1405", (40, 80), cv2.FONT_HERSHEY_SIMPLEX, 2.0, 40, 4)
    frame[200:200 + qr.shape[0], 500:500 + qr.shape[1]] = cv2.bitwise_not(qr)
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)


def test_a_still_that_needs_the_last_rescue_is_read_within_r_frames(tmp_path: Path) -> None:
    image = tmp_path / "dark-slip.png"
    cv2.imwrite(str(image), _light_on_dark_qr_frame("slip-dark-42"))

    async def go() -> tuple[str, int, int]:
        cam = CameraScanner("cam", source=str(image), fps=200, frame_budget_ms=30)
        await cam.open()
        code = await cam.read(timeout=5)
        await cam.close()
        return code.text, cam.counters["no_reads"], cam.decoder.rescue_count

    text, misses, rescues = run(go())
    assert text == "slip-dark-42"
    # the budget spreads the rescues over frames, yet none is starved: read by frame R
    assert misses < rescues


def test_the_frame_budget_is_a_camera_option() -> None:
    cam = CameraScanner("cam", source="/nonexistent/slip.png", frame_budget_ms=15)
    assert cam.capabilities["frame_budget_ms"] == 15.0
    assert CameraScanner("cam", source="/nonexistent/slip.png").capabilities["frame_budget_ms"] > 0
    with pytest.raises(InvalidData):
        CameraScanner("cam", source="/nonexistent/slip.png", frame_budget_ms=-1)


def test_a_still_image_over_the_pixel_limit_is_offline_at_open(tmp_path: Path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # the header of a 30000 x 30000 PNG (900 MP) and a few rows: only the header is read
    huge = tmp_path / "poster.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" + b"\xff" * 30000)) + chunk(b"IEND", b""))
    cam = CameraScanner("cam", source=str(huge))
    with pytest.raises(DeviceOffline, match="over the limit"):
        run(cam.open())


def test_a_video_of_frames_over_the_pixel_limit_is_offline_before_any_frame_is_read(tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    _write_video(clip, [_bill_barcode_frame()] * 3)
    cam = CameraScanner("cam", source=str(clip), max_pixels=640 * 480 - 1)
    with pytest.raises(DeviceOffline, match="640x480"):
        run(cam.open())
    assert cam.state == DeviceState.OFFLINE
    # at the limit it opens and reads
    async def go() -> str:
        ok = CameraScanner("cam", source=str(clip), fps=50, max_pixels=640 * 480)
        await ok.open()
        code = await ok.read(timeout=3)
        await ok.close()
        return code.text

    assert run(go()) == BILL


@pytest.mark.parametrize("bad", [0, -1, "many", 2.5, True])
def test_a_bad_max_pixels_option_is_invalid_data(bad: Any) -> None:
    with pytest.raises(InvalidData):
        CameraScanner("cam", source="/nonexistent/slip.png", max_pixels=bad)
