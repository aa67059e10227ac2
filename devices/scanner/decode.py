"""Barcode decoding of camera frames: one `FrameDecoder` over zxing-cpp (default) or pyzbar,
with format names normalised across backends and a time-boxed rescue cascade for hard frames."""

from __future__ import annotations

import enum
import importlib.metadata
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from devices.base import InvalidData, Unsupported
from devices.contracts import ScannedCode

log = logging.getLogger("devices.scanner.decode")


class DecoderBackend(enum.StrEnum):
    ZXING = "zxing"
    ZBAR = "zbar"


#: the formats a municipal kiosk meets: fee-slip QR, bill barcodes (Code 128 and ITF, see
#: FIELD-NOTES), DataMatrix and PDF417 on some national documents
DEFAULT_FORMATS: tuple[str, ...] = ("QRCode", "Code128", "ITF", "DataMatrix", "PDF417")

# zbar has no DataMatrix decoder and its PDF417 decoder is an unfinished stub that never
# completes a symbol, so neither is offered for the zbar backend.
_ZBAR_SYMBOLS: dict[str, str] = {"QRCode": "QRCODE", "Code128": "CODE128", "ITF": "I25"}
_ZBAR_TO_NAME: dict[str, str] = {v: k for k, v in _ZBAR_SYMBOLS.items()}
_ZXING_SUPPORTED: frozenset[str] = frozenset(DEFAULT_FORMATS)


@dataclass(frozen=True)
class DecodeStats:
    """How the last frame was decoded: which stage read it and how long it took."""

    stage: str  # "fast", a rescue name, or "none"
    ms: float
    stages_tried: int


@dataclass(frozen=True)
class Rescue:
    """One cheap second attempt on a frame the fast path missed."""

    name: str
    prepare: Callable[[np.ndarray], np.ndarray]
    options: tuple[tuple[str, Any], ...] = ()
    #: restrict this attempt to these formats (of those the decoder reads); () = all
    only: tuple[str, ...] = ()


def _unsharp(gray: np.ndarray) -> np.ndarray:
    # Camera blur (focus, motion) rounds module edges until the local-average binarizer
    # merges neighbours; an unsharp mask restores the edge step. Measured: the best rescue.
    soft = cv2.GaussianBlur(gray, (0, 0), 2.0)
    return cv2.addWeighted(gray, 2.0, soft, -1.0, 0)


def _upscale(gray: np.ndarray) -> np.ndarray:
    # Small modules (< ~3 px after perspective) fall under the detector's sampling grid;
    # 1.5x cubic upsampling gives it room. Reads a different set of frames than unsharp.
    return cv2.resize(gray, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_CUBIC)


def _invert(gray: np.ndarray) -> np.ndarray:
    return cv2.bitwise_not(gray)


def _identity(gray: np.ndarray) -> np.ndarray:
    return gray


#: the fast path leaves out rotated-1D and inverted searches: they double its cost and read
#: nothing on upright camera frames; the rescues below bring them back on a miss.
FAST_OPTIONS: tuple[tuple[str, Any], ...] = (("try_rotate", False), ("try_invert", False))

#: formats whose readers need try_rotate to find a symbol turned by ~90 degrees
_ROTATION_SENSITIVE = ("Code128", "ITF", "PDF417")


def _build_rescues() -> tuple[Rescue, ...]:
    import zxingcpp

    # Order and choice measured with `bench/bench_decode.py --stages` on two seeds (300
    # frames each, ~33 fast-path misses): unsharp reads 13-18 of them at ~6 ms, 1.5x
    # upsampling adds 3-4 more, the global-histogram binarizer 1-2. CLAHE, adaptive
    # threshold and x0.5 downscaling read fewer per millisecond and were left out.
    # "rotated" and "inverted" read nothing on the bench (QR only) but keep what the fast
    # path gave up: vertical bill barcodes and light-on-dark codes.
    return (
        Rescue("unsharp", _unsharp, FAST_OPTIONS),
        Rescue("rotated", _identity, (("try_rotate", True), ("try_invert", False),
                                      ("try_downscale", False)), _ROTATION_SENSITIVE),
        Rescue("upscale", _upscale, FAST_OPTIONS + (("try_downscale", False),)),
        Rescue("global-histogram", _identity,
               FAST_OPTIONS + (("binarizer", zxingcpp.Binarizer.GlobalHistogram),)),
        Rescue("inverted", _invert, FAST_OPTIONS),
    )


def backend_version(backend: DecoderBackend | str) -> str:
    """The installed version of the decoding library behind `backend`."""
    dist = "zxing-cpp" if DecoderBackend(backend) == DecoderBackend.ZXING else "pyzbar"
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def to_gray(frame: np.ndarray) -> np.ndarray:
    """A contiguous 8-bit single-channel view of a BGR, BGRA or gray frame."""
    if not isinstance(frame, np.ndarray) or frame.size == 0:
        raise InvalidData("frame is not a non-empty image array", error_code="badFrame")
    if frame.dtype != np.uint8:
        raise InvalidData(f"frame must be 8-bit, got {frame.dtype}", error_code="badFrame")
    if frame.ndim == 2:
        return np.ascontiguousarray(frame)
    if frame.ndim == 3 and frame.shape[2] == 1:
        return np.ascontiguousarray(frame[:, :, 0])
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    raise InvalidData(f"frame shape {frame.shape} is not gray, BGR or BGRA", error_code="badFrame")


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as a gray uint8 array. OpenCV first; Pillow for what OpenCV's
    codecs refuse (tiny WebP files, for one). Raises InvalidData when neither can."""
    frame = cv2.imread(os.fspath(path), cv2.IMREAD_GRAYSCALE)
    if frame is not None:
        return frame
    try:
        from PIL import Image, UnidentifiedImageError

        with Image.open(path) as img:
            return np.asarray(img.convert("L"))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InvalidData(f"cannot read image {os.fspath(path)!r}: {exc}",
                          error_code="badImage") from exc


class FrameDecoder:
    """Decode every barcode in a frame.

    zxing backend: one plain zxing-cpp call on the gray frame (most frames end here); on a
    miss, rescues run in order until one reads or `rescue_budget_ms` is spent, so a frame
    never costs much more than a 30 fps camera allows. zbar backend: one pyzbar call.
    """

    def __init__(
        self,
        backend: DecoderBackend | str = DecoderBackend.ZXING,
        formats: Iterable[str] = DEFAULT_FORMATS,
        *,
        rescue_budget_ms: float = 26.0,
        rescues: bool = True,
    ) -> None:
        try:
            self.backend = DecoderBackend(backend)
        except ValueError:
            raise Unsupported(f"unknown decoder backend {backend!r}; use 'zxing' or 'zbar'",
                              error_code="badBackend") from None
        wanted = tuple(dict.fromkeys(formats))
        unknown = [f for f in wanted if f not in _ZXING_SUPPORTED]
        if unknown:
            raise Unsupported(f"unknown barcode formats {unknown}; known: {list(DEFAULT_FORMATS)}",
                              error_code="badFormat")
        if self.backend == DecoderBackend.ZBAR:
            missing = [f for f in wanted if f not in _ZBAR_SYMBOLS]
            # Asking zbar for what it cannot read is not an error: the formats it lacks are
            # dropped and reported in capabilities, so a camera config can switch backends.
            self.formats = tuple(f for f in wanted if f in _ZBAR_SYMBOLS)
            self.unsupported_formats = tuple(missing)
        else:
            self.formats = wanted
            self.unsupported_formats = ()
        if not self.formats:
            raise Unsupported(f"backend {self.backend} reads none of {list(wanted)}",
                              error_code="badFormat")
        self.rescue_budget_ms = rescue_budget_ms
        self.version = backend_version(self.backend)
        self.last_stats = DecodeStats("none", 0.0, 0)
        self._rescues: tuple[Rescue, ...] = ()
        # per-rescue running cost estimate (ms): a rescue starts only if it is expected to
        # finish inside the budget, so the slowest frames stay within a 30 fps frame time
        self._cost_ms: dict[str, float] = {}
        if self.backend == DecoderBackend.ZXING:
            import zxingcpp

            self._zx = zxingcpp
            self._zx_formats = zxingcpp.barcode_formats_from_str(",".join(self.formats))
            self._rescue_formats: dict[str, Any] = {}
            kept = []
            for rescue in (_build_rescues() if rescues else ()):
                subset = [f for f in rescue.only if f in self.formats] if rescue.only else list(self.formats)
                if subset:
                    kept.append(rescue)
                    self._rescue_formats[rescue.name] = zxingcpp.barcode_formats_from_str(",".join(subset))
            self._rescues = tuple(kept)
        else:
            from pyzbar import pyzbar

            self._zbar = pyzbar
            self._zbar_symbols = [pyzbar.ZBarSymbol[_ZBAR_SYMBOLS[f]] for f in self.formats]

    @property
    def capabilities(self) -> dict[str, Any]:
        all_known = DEFAULT_FORMATS
        supported = [f for f in all_known if self.backend == DecoderBackend.ZXING or f in _ZBAR_SYMBOLS]
        return {
            "backend": str(self.backend),
            "version": self.version,
            "formats": list(self.formats),
            "supported_formats": supported,
            "unsupported_formats": [f for f in all_known if f not in supported],
            "rescues": [r.name for r in self._rescues],
            "rescue_budget_ms": self.rescue_budget_ms,
        }

    def decode(self, frame: np.ndarray) -> list[ScannedCode]:
        """Every code found in `frame` (BGR or gray, uint8), de-duplicated, in reading order."""
        gray = to_gray(frame)
        start = time.perf_counter()
        if self.backend == DecoderBackend.ZBAR:
            codes = self._read_zbar(gray)
            self.last_stats = DecodeStats("fast" if codes else "none",
                                          (time.perf_counter() - start) * 1000, 1)
            return codes
        codes = self._read_zxing(gray, self._zx_formats, FAST_OPTIONS)
        tried = 1
        stage = "fast" if codes else "none"
        if not codes:
            deadline = start + self.rescue_budget_ms / 1000
            for rescue in self._rescues:
                began = time.perf_counter()
                if began + self._cost_ms.get(rescue.name, 0.0) / 1000 > deadline:
                    continue  # a cheaper rescue further down may still fit
                tried += 1
                codes = self._read_zxing(rescue.prepare(gray), self._rescue_formats[rescue.name],
                                         rescue.options)
                spent = (time.perf_counter() - began) * 1000
                old = self._cost_ms.get(rescue.name)
                self._cost_ms[rescue.name] = spent if old is None else 0.8 * old + 0.2 * spent
                if codes:
                    stage = rescue.name
                    break
        self.last_stats = DecodeStats(stage, (time.perf_counter() - start) * 1000, tried)
        if stage not in ("fast", "none"):
            log.debug("rescued by %s", stage, extra={"event": "decode_rescue"})
        return codes

    def _read_zxing(self, gray: np.ndarray, formats: Any,
                    options: tuple[tuple[str, Any], ...]) -> list[ScannedCode]:
        # Plain text mode: the payload as encoded (GS1 separators as GS, control characters
        # kept), which is what payload parsers need; HRI mode would rewrite them for display.
        found = self._zx.read_barcodes(gray, formats=formats, text_mode=self._zx.TextMode.Plain,
                                       **dict(options))
        return _unique(ScannedCode(b.format.name, b.text) for b in found if b.valid)

    def _read_zbar(self, gray: np.ndarray) -> list[ScannedCode]:
        found = self._zbar.decode(gray, symbols=self._zbar_symbols)
        out = []
        for sym in found:
            try:
                text = sym.data.decode("utf-8")
            except UnicodeDecodeError:
                # zbar hands back raw bytes; a payload that is not UTF-8 is kept readable
                # rather than dropped, as zxing's HRI text mode would do.
                text = sym.data.decode("latin-1")
            out.append(ScannedCode(_ZBAR_TO_NAME.get(sym.type, sym.type), text))
        return _unique(out)


def _unique(codes: Iterable[ScannedCode]) -> list[ScannedCode]:
    return list(dict.fromkeys(codes))


__all__ = ["DEFAULT_FORMATS", "DecodeStats", "DecoderBackend", "FrameDecoder", "Rescue",
           "backend_version", "load_image", "to_gray"]
