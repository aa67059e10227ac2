"""Camera scanner: frames from an OpenCV capture (device index or video file) or a still image,
decoded off the event loop by FrameDecoder, with repeats within the window dropped."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from devices.base import (
    DeviceIdentity,
    DeviceOffline,
    HardwareError,
    InvalidData,
    register,
)
from devices.contracts import ScannedCode, Scanner
from devices.scanner.decode import (
    DEFAULT_FORMATS,
    DEFAULT_FRAME_BUDGET_MS,
    MAX_IMAGE_PIXELS,
    FrameDecoder,
    load_image,
)
from devices.scanner.repeat import RepeatFilter

log = logging.getLogger("devices.scanner.camera")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


@register("camera")
class CameraScanner(Scanner):
    """Options: source (int device index | image path | video path), backend="zxing",
    repeat_window_s=3.0, fps=15 (frames looked at per second), formats (default all five),
    frame_budget_ms (time one frame's decode may take; DEFAULT_FRAME_BUDGET_MS), max_pixels
    (largest still or video frame accepted; MAX_IMAGE_PIXELS). A video file loops, so a
    recorded clip behaves like a camera that keeps looking."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        if "source" not in options:
            raise InvalidData(f"{name}: camera needs a `source`", device=name, error_code="noSource")
        self.source: int | str = options["source"]
        if isinstance(self.source, str) and self.source.isdigit():
            self.source = int(self.source)
        self.fps = float(options.get("fps", 15.0))
        if self.fps <= 0:
            raise InvalidData(f"{name}: fps must be > 0", device=name, error_code="badFps")
        # a live stream: rescues take turns across frames within each frame's budget, and
        # a still image shown for R frames gets every rescue, as a file decode would
        self.decoder = FrameDecoder(options.get("backend", "zxing"),
                                    options.get("formats", DEFAULT_FORMATS),
                                    frame_budget_ms=options.get("frame_budget_ms",
                                                                DEFAULT_FRAME_BUDGET_MS))
        self.max_pixels = options.get("max_pixels", MAX_IMAGE_PIXELS)
        if isinstance(self.max_pixels, bool) or not isinstance(self.max_pixels, int) or self.max_pixels <= 0:
            raise InvalidData(f"{name}: max_pixels must be a whole number > 0", device=name,
                              error_code="badMaxPixels")
        self._repeats = RepeatFilter(float(options.get("repeat_window_s", 3.0)))
        self._capture: cv2.VideoCapture | None = None
        self._still: np.ndarray | None = None
        self._next_frame_at = 0.0
        self.capabilities = dict(self.decoder.capabilities)

    async def _open(self) -> None:
        if isinstance(self.source, int):
            self._capture = await self.run_blocking(self._open_capture, self.source)
            kind = f"camera {self.source}"
        else:
            path = Path(self.source)
            if not path.is_file():
                raise DeviceOffline(f"{self.name}: no image or video at {path}", device=self.name,
                                    error_code="noSource")
            if path.suffix.lower() in IMAGE_SUFFIXES:
                try:
                    self._still = await self.run_blocking(
                        functools.partial(load_image, path, max_pixels=self.max_pixels))
                except InvalidData as exc:
                    raise DeviceOffline(f"{self.name}: {exc}", device=self.name,
                                        error_code="noSource") from exc
                kind = "image file"
            else:
                self._capture = await self.run_blocking(self._open_capture, os.fspath(path))
                kind = "video file"
        self.identity = DeviceIdentity(
            model=f"{kind} via OpenCV {cv2.__version__}",
            serial=str(self.source) if isinstance(self.source, int) else Path(self.source).name,
            firmware=f"{self.decoder.backend} {self.decoder.version}",
            vendor=str(self.decoder.backend),
        )
        self.capabilities["source_kind"] = kind

    def _open_capture(self, source: int | str) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            capture.release()
            raise DeviceOffline(f"{self.name}: OpenCV cannot open {source!r}", device=self.name,
                                error_code="noSource")
        # the container says the frame size before any frame is decoded: a clip of huge
        # frames is refused here, as load_image refuses a huge still
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width * height > self.max_pixels:
            capture.release()
            raise DeviceOffline(f"{self.name}: frames of {width}x{height} in {source!r} are over "
                                f"the limit of {self.max_pixels:,} pixels", device=self.name,
                                error_code="frameTooLarge")
        return capture

    async def _close(self) -> None:
        if self._capture is not None:
            capture, self._capture = self._capture, None
            await self.run_blocking(capture.release)
        self._still = None

    async def read(self, *, timeout: float = 30.0) -> ScannedCode:
        return await self.command("read", self._next_code, timeout=timeout)

    async def _next_code(self) -> ScannedCode:
        while True:
            # pace frames to `fps`: a still image or a file would otherwise spin a core
            delay = self._next_frame_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next_frame_at = time.monotonic() + 1.0 / self.fps
            codes = await self.run_blocking(self._grab_and_decode)
            if not codes:
                self.counters["no_reads"] += 1
                continue
            for code in codes:
                if self._repeats.admit(code.text):
                    self.counters["good_scans"] += 1
                    return code
                self.counters["duplicates_dropped"] += 1

    def _grab_and_decode(self) -> list[ScannedCode]:
        if self._still is not None:
            frame = self._still
        else:
            frame = self._grab()
        return [ScannedCode(c.format, c.text, source=self.name) for c in self.decoder.decode(frame)]

    def _grab(self) -> np.ndarray:
        capture = self._capture
        if capture is None:
            raise DeviceOffline(f"{self.name}: camera is closed", device=self.name)
        ok, frame = capture.read()
        if not ok and isinstance(self.source, str):
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)  # end of a clip: loop it
            ok, frame = capture.read()
        if not ok or frame is None:
            if isinstance(self.source, int):
                raise DeviceOffline(f"{self.name}: camera {self.source} stopped delivering frames",
                                    device=self.name, error_code="noFrames")
            raise HardwareError(f"{self.name}: cannot read a frame from {self.source}",
                                device=self.name, error_code="noFrames")
        return frame


__all__ = ["CameraScanner"]
