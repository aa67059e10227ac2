"""Printer capabilities as data, read from python-escpos's profile database
(escpos-printer-db): paper width in dots, native QR, raster images, cutter, identity."""

from __future__ import annotations

from dataclasses import dataclass

from devices.printer import escpos_env  # noqa: F401,I001  (before escpos: keeps its cache out of /tmp)
from escpos.capabilities import NotSupported, get_profile

from devices.base import InvalidData

#: An 80 mm Epson with native QR and a full cutter whose DB entry gives 576 dots (72 mm
#: printable). TM-T88V's entry says 512 dots, which wastes 8 mm of a kiosk receipt.
DEFAULT_PROFILE = "TM-T20II"
WIDTH_80MM_DOTS = 576
WIDTH_58MM_DOTS = 384


@dataclass(frozen=True)
class PrinterProfile:
    """What one printer model can do, as the layout and the driver need it."""

    name: str
    vendor: str
    model: str
    width_dots: int
    dpi: int
    native_qr: bool
    raster_image: bool
    full_cut: bool
    part_cut: bool


def _width_dots(media: dict) -> int:
    width = media.get("width", {}) if isinstance(media, dict) else {}
    pixels = width.get("pixels")
    if isinstance(pixels, int) and pixels > 0:
        return pixels - pixels % 8
    mm = width.get("mm")
    # The DB leaves generic profiles "Unknown": 58 mm rolls print 48 mm = 384 dots, else 80 mm.
    if isinstance(mm, (int, float)) and mm <= 58:
        return WIDTH_58MM_DOTS
    return WIDTH_80MM_DOTS


def load_profile(name: str = DEFAULT_PROFILE) -> PrinterProfile:
    """The capabilities of profile `name` from the escpos-printer-db; InvalidData if unknown."""
    try:
        raw = get_profile(name)
    except (NotSupported, KeyError) as exc:
        raise InvalidData(f"unknown printer profile {name!r}: {exc}", error_code="unknownProfile") from exc
    data = raw.profile_data
    dpi = data.get("media", {}).get("dpi")
    return PrinterProfile(
        name=name,
        vendor=str(data.get("vendor", "")),
        model=str(data.get("name", name)),
        width_dots=_width_dots(data.get("media", {})),
        dpi=dpi if isinstance(dpi, int) else 203,
        native_qr=bool(raw.supports("qrCode")),
        raster_image=bool(raw.supports("bitImageRaster")),
        full_cut=bool(raw.supports("paperFullCut")),
        part_cut=bool(raw.supports("paperPartCut")),
    )


__all__ = ["PrinterProfile", "load_profile", "DEFAULT_PROFILE", "WIDTH_80MM_DOTS", "WIDTH_58MM_DOTS"]
