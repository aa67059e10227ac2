"""Barcode decoding of camera frames: one `FrameDecoder` over zxing-cpp (default) or pyzbar,
with format names normalised across backends and rescues for hard frames spread over a
camera stream within a per-frame time budget; `load_image` reads files with a pixel limit."""

from __future__ import annotations

import enum
import importlib.metadata
import logging
import os
import re
import time
import warnings
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


#: default time one camera frame may take, plain decode and rescues together (ms). A 30 fps
#: camera gives a frame 33 ms; the rest is headroom for a rescue that runs past its estimate
#: (zxing-cpp cannot be interrupted once a call has started). On held-out bench seeds 26 ms
#: reads as many scenes as no budget at all (every rescue on every miss), or one fewer in
#: 80, with p95 ~25 ms; 20 ms reads 5-10% fewer.
DEFAULT_FRAME_BUDGET_MS = 26.0

#: `load_image` refuses files whose header declares more pixels than this: 50 MP holds any
#: phone or document-camera photo (8160x6120), while a 40000x40000 PNG of a few hundred KB
#: would otherwise take gigabytes to decode.
MAX_IMAGE_PIXELS = 50_000_000

#: a rescue's first cost estimate, as a multiple of the plain decode's time on the same
#: frame (measured 1-2x on the bench); replaced by what it really costs after its first run
_PRIOR_COST_RATIO = 2.0


class ImageTooLarge(InvalidData):
    """An image file whose declared size is over the pixel limit: refused before decoding."""


@dataclass(frozen=True)
class DecodeStats:
    """How the last frame was decoded: which stage read it and how long it took."""

    stage: str  # "fast", a rescue name, or "none"
    ms: float
    stages_tried: int
    #: the rescues tried on this frame, in order (empty when the plain decode read it)
    rescues_tried: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rescue:
    """One cheap second attempt on a frame the fast path missed."""

    name: str
    prepare: Callable[[np.ndarray], np.ndarray]
    options: tuple[tuple[str, Any], ...] = ()
    #: restrict this attempt to these formats (of those the decoder reads); () = all
    only: tuple[str, ...] = ()
    #: the library that reads the prepared image (zxing-cpp unless said otherwise)
    engine: DecoderBackend = DecoderBackend.ZXING


def _unsharp(gray: np.ndarray) -> np.ndarray:
    # Camera blur (focus, motion) rounds module edges until the local-average binarizer
    # merges neighbours; an unsharp mask restores the edge step. Measured: the best rescue.
    soft = cv2.GaussianBlur(gray, (0, 0), 2.0)
    return cv2.addWeighted(gray, 2.0, soft, -1.0, 0)


def _upscale(gray: np.ndarray) -> np.ndarray:
    # Small modules (< ~3 px after perspective) fall under the detector's sampling grid;
    # 1.5x cubic upsampling gives it room. Reads a different set of frames than unsharp.
    return cv2.resize(gray, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_CUBIC)


def _bar_rows(gray: np.ndarray) -> np.ndarray:
    # For zbar's line scanner: each output row is the mean of 4 input rows. Along the bars
    # of a level 1D code that averages away sensor noise and JPEG blocks without touching
    # the bar edges, and zbar has a quarter of the rows to scan (cost ~ a zxing rescue).
    return cv2.resize(gray, (gray.shape[1], max(1, gray.shape[0] // 4)), interpolation=cv2.INTER_AREA)


def _invert(gray: np.ndarray) -> np.ndarray:
    return cv2.bitwise_not(gray)


def _identity(gray: np.ndarray) -> np.ndarray:
    return gray


#: the fast path leaves out rotated-1D and inverted searches: they double its cost and read
#: nothing on upright camera frames; the rescues below bring them back on a miss.
FAST_OPTIONS: tuple[tuple[str, Any], ...] = (("try_rotate", False), ("try_invert", False))

#: formats whose readers need try_rotate to find a symbol turned by ~90 degrees
_ROTATION_SENSITIVE = ("Code128", "ITF", "PDF417")
#: the bill barcodes: 1D formats both libraries read
_LINEAR = ("Code128", "ITF")


def _build_rescues() -> tuple[Rescue, ...]:
    import zxingcpp

    # Order and choice measured with `bench/bench_decode.py --stages` (QR frames at first,
    # then with bill barcodes, damaged and empty frames): unsharp reads the most misses per
    # millisecond; zbar's line scanner on row-averaged frames reads blurred or smudged bill
    # barcodes no zxing rescue reads (7 of 30 such frames on held-out seeds, at a quarter
    # of a full pyzbar call); "rotated" keeps what the fast path gave up (bill barcodes held
    # upright); 1.5x upsampling reads small modules; the global-histogram binarizer a few
    # more. "inverted" keeps light-on-dark codes. CLAHE, adaptive threshold, x0.5
    # downscaling and deskewing 1D codes read fewer per millisecond and were left out.
    # In a camera stream the rescues take turns, one or two per frame (see FrameDecoder).
    return (
        Rescue("unsharp", _unsharp, FAST_OPTIONS),
        Rescue("zbar-rows", _bar_rows, (), _LINEAR, DecoderBackend.ZBAR),
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


def load_image(path: str | os.PathLike[str], *, max_pixels: int | None = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read an image file as a gray uint8 array, upright as its EXIF orientation says.

    The header comes first (Pillow opens lazily): a file declaring more than `max_pixels`
    pixels raises ImageTooLarge before a single pixel is decoded. Pillow then decodes it
    (JPEG straight to gray, as OpenCV's IMREAD_GRAYSCALE did). Not OpenCV: its imread has no
    header-only read to check first, and its codecs print to stderr (libpng, libjpeg) on a
    broken file. Every failure is InvalidData with a one-line message naming the file;
    `max_pixels=None` lifts the limit.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = os.fspath(path)
    try:
        with warnings.catch_warnings():
            # Pillow warns (on stderr) past its own ~89 MP bomb threshold; ours is the limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(name) as img:
                width, height = img.size
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageTooLarge(
                        f"{name}: image is {width}x{height} ({width * height:,} pixels), over the "
                        f"limit of {max_pixels:,}; not decoded", error_code="imageTooLarge")
                if img.format == "JPEG":
                    img.draft("L", img.size)  # libjpeg's own gray output: no RGB round trip
                gray = ImageOps.exif_transpose(img).convert("L")
                return np.asarray(gray)
    except FileNotFoundError:
        raise InvalidData(f"{name}: no such file", error_code="noFile") from None
    except IsADirectoryError:
        raise InvalidData(f"{name}: is a directory, not an image", error_code="badImage") from None
    except PermissionError:
        raise InvalidData(f"{name}: permission denied", error_code="noFile") from None
    except Image.DecompressionBombError as exc:
        # Pillow refuses at open past twice its threshold (~179 MP), before telling the size
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(declared.group(1)):,} pixels" if declared else "too many pixels"
        raise ImageTooLarge(f"{name}: image declares {size}, over the limit of "
                            f"{max_pixels or MAX_IMAGE_PIXELS:,}; not decoded",
                            error_code="imageTooLarge") from None
    except UnidentifiedImageError:
        raise InvalidData(f"{name}: not an image file", error_code="badImage") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # a truncated or corrupt file (some Pillow plugins raise SyntaxError or EOFError)
        raise InvalidData(f"{name}: cannot decode the image: {_one_line(exc)}",
                          error_code="badImage") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class FrameDecoder:
    """Decode every barcode in a frame.

    zxing backend: one plain zxing-cpp call on the gray frame (most frames end there). On a
    miss, rescues run:
      - `frame_budget_ms` set (a camera stream; default DEFAULT_FRAME_BUDGET_MS): rescues
        follow a rotating schedule across frames. Each missed frame continues where the last
        one stopped and runs the next rescues while each is expected to finish inside the
        frame's budget (a per-rescue cost estimate, scaled by this frame's plain decode
        time). Over R successive frames of the same slip every rescue gets its turn; a hit
        (plain or rescued) starts the schedule again at the first, most useful rescue.
      - `frame_budget_ms=None` (a file, a still): every rescue in order until one reads.
    zbar backend: one pyzbar call. Not thread-safe: one decoder per camera loop.
    """

    def __init__(
        self,
        backend: DecoderBackend | str = DecoderBackend.ZXING,
        formats: Iterable[str] = DEFAULT_FORMATS,
        *,
        frame_budget_ms: float | None = DEFAULT_FRAME_BUDGET_MS,
        rescues: bool = True,
    ) -> None:
        try:
            self.backend = DecoderBackend(backend)
        except ValueError:
            raise Unsupported(f"unknown decoder backend {backend!r}; use 'zxing' or 'zbar'",
                              error_code="badBackend") from None
        if frame_budget_ms is not None and (isinstance(frame_budget_ms, bool)
                                            or not isinstance(frame_budget_ms, int | float)
                                            or not frame_budget_ms > 0
                                            or frame_budget_ms == float("inf")):
            raise InvalidData(f"frame_budget_ms must be a positive number of ms or None, got "
                              f"{frame_budget_ms!r}", error_code="badBudget")
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
        self.frame_budget_ms = float(frame_budget_ms) if frame_budget_ms is not None else None
        self.version = backend_version(self.backend)
        self.last_stats = DecodeStats("none", 0.0, 0)
        self._rescues: tuple[Rescue, ...] = ()
        # the rotating schedule: index of the rescue the next missed frame starts with
        self._next_rescue = 0
        # per-rescue running cost estimate (ms). Measured on the bench, a rescue's cost is
        # barely correlated with the plain decode's on the same frame (r ~ 0.3), so a plain
        # running average predicts it better than a ratio to the plain decode would.
        self._cost_ms: dict[str, float] = {}
        if self.backend == DecoderBackend.ZXING:
            import zxingcpp

            self._zx = zxingcpp
            self._zx_formats = zxingcpp.barcode_formats_from_str(",".join(self.formats))
            self._rescue_formats: dict[str, Any] = {}
            kept = []
            for rescue in (_build_rescues() if rescues else ()):
                subset = [f for f in rescue.only if f in self.formats] if rescue.only else list(self.formats)
                if not subset:
                    continue
                kept.append(rescue)
                if rescue.engine == DecoderBackend.ZBAR:
                    from pyzbar import pyzbar

                    self._zbar = pyzbar
                    self._rescue_formats[rescue.name] = [pyzbar.ZBarSymbol[_ZBAR_SYMBOLS[f]] for f in subset]
                else:
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
            "frame_budget_ms": self.frame_budget_ms,
        }

    @property
    def rescue_count(self) -> int:
        """R: how many frames of one slip it takes, at most, for every rescue to get a turn
        (when each frame's budget fits at least one)."""
        return len(self._rescues)

    @property
    def next_rescue(self) -> str | None:
        """The rescue the next missed frame starts with (None without rescues)."""
        return self._rescues[self._next_rescue % len(self._rescues)].name if self._rescues else None

    def reset_schedule(self) -> None:
        """Start the rotating schedule again at the first rescue (a new camera session)."""
        self._next_rescue = 0

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
        plain_ms = (time.perf_counter() - start) * 1000
        stage = "fast" if codes else "none"
        tried: list[str] = []
        if codes:
            self._next_rescue = 0
        elif self._rescues:
            if self.frame_budget_ms is None:
                codes, stage = self._rescue_all(gray, tried)
            else:
                codes, stage = self._rescue_within_budget(gray, start, plain_ms, tried)
        self.last_stats = DecodeStats(stage, (time.perf_counter() - start) * 1000, 1 + len(tried),
                                      tuple(tried))
        if stage not in ("fast", "none"):
            log.debug("rescued by %s", stage, extra={"event": "decode_rescue"})
        return codes

    def _rescue_all(self, gray: np.ndarray, tried: list[str]) -> tuple[list[ScannedCode], str]:
        for rescue in self._rescues:
            tried.append(rescue.name)
            codes = self._run_rescue(rescue, gray)
            if codes:
                return codes, rescue.name
        return [], "none"

    def _rescue_within_budget(self, gray: np.ndarray, start: float, plain_ms: float,
                              tried: list[str]) -> tuple[list[ScannedCode], str]:
        assert self.frame_budget_ms is not None
        deadline = start + self.frame_budget_ms / 1000
        count = len(self._rescues)
        first = self._next_rescue % count
        for step in range(count):
            index = (first + step) % count
            rescue = self._rescues[index]
            predicted_s = self._cost_ms.get(rescue.name, _PRIOR_COST_RATIO * plain_ms) / 1000
            if time.perf_counter() + predicted_s > deadline:
                if step == 0:
                    # it does not fit this frame: pass its turn on, so one costly rescue
                    # never starves the others; it runs on a frame with room to spare. Its
                    # estimate shrinks a little each time, so one slow run (a busy machine)
                    # cannot bar it for good: it is tried again and re-measured.
                    self._next_rescue = index + 1
                    if rescue.name in self._cost_ms:
                        self._cost_ms[rescue.name] *= 0.9
                    continue
                break
            tried.append(rescue.name)
            began = time.perf_counter()
            codes = self._run_rescue(rescue, gray)
            spent = (time.perf_counter() - began) * 1000
            old = self._cost_ms.get(rescue.name)
            # moving average, quicker to rise than to fall: an overrun costs the frame rate,
            # an overestimate only postpones a rescue to a frame with more room
            weight = 0.5 if old is None or spent > old else 0.2
            self._cost_ms[rescue.name] = spent if old is None else (1 - weight) * old + weight * spent
            if codes:
                self._next_rescue = 0
                return codes, rescue.name
            self._next_rescue = index + 1
        return [], "none"

    def _run_rescue(self, rescue: Rescue, gray: np.ndarray) -> list[ScannedCode]:
        prepared = np.ascontiguousarray(rescue.prepare(gray))
        if rescue.engine == DecoderBackend.ZBAR:
            # zbar's quality for a 1D code is the number of scan lines that agreed on it. On
            # the damaged codes of the bench a single line misread a Code 128 ("$/%{"), while
            # true reads had 2-28 lines: ask for two, as zxing-cpp's 1D readers do.
            return self._read_zbar(prepared, self._rescue_formats[rescue.name], min_quality=2)
        return self._read_zxing(prepared, self._rescue_formats[rescue.name], rescue.options)

    def _read_zxing(self, gray: np.ndarray, formats: Any,
                    options: tuple[tuple[str, Any], ...]) -> list[ScannedCode]:
        # Plain text mode: the payload as encoded (GS1 separators as GS, control characters
        # kept), which is what payload parsers need; HRI mode would rewrite them for display.
        found = self._zx.read_barcodes(gray, formats=formats, text_mode=self._zx.TextMode.Plain,
                                       **dict(options))
        # zxing-cpp 3 reads format families: "QRCode" also finds Micro QR and rMQR, and the
        # bench caught a Micro QR "read" inside a real QR code. Only the formats asked for.
        return _unique(ScannedCode(b.format.name, b.text) for b in found
                       if b.valid and b.format.name in self.formats)

    def _read_zbar(self, gray: np.ndarray, symbols: list[Any] | None = None,
                   min_quality: int = 0) -> list[ScannedCode]:
        found = self._zbar.decode(gray, symbols=symbols or self._zbar_symbols)
        out = []
        for sym in found:
            if sym.quality < min_quality:
                continue
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


__all__ = ["DEFAULT_FORMATS", "DEFAULT_FRAME_BUDGET_MS", "MAX_IMAGE_PIXELS", "DecodeStats",
           "DecoderBackend", "FrameDecoder", "ImageTooLarge", "Rescue", "backend_version",
           "load_image", "to_gray"]
