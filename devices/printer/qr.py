"""QR codes the way receipt printers draw them (model 2, ECC level M): the module matrix, the
module size for a wanted print size, and a raster image for printers without native QR."""

from __future__ import annotations

import functools

from PIL import Image as PILImage

#: QR quiet zone in modules (ISO/IEC 18004 asks for 4)
QR_BORDER_MODULES = 4
#: default printed QR edge when no size is asked for
QR_DEFAULT_DOTS = 256
#: dots a layout leaves blank at each side of the paper; a QR never reaches into them
SIDE_MARGIN_DOTS = 8


@functools.lru_cache(maxsize=64)
def _qr_modules(data: str) -> PILImage.Image:
    """The modules as an "L" image, quiet zone included: 0 a dark module, 255 a light one."""
    # zxing-cpp's encoder (C++) takes ~1 ms where the pure-Python `qrcode` took ~35 ms per
    # receipt, most of the fee transaction's software time; same version and ECC level.
    # It is imported at the first code, not with the driver (the kiosk's start to its attract
    # screen does not pay for it), and its image goes to Pillow through the buffer protocol:
    # numpy, which this took before, was ~14 MB of the kiosk's peak memory for one receipt.
    import zxingcpp

    code = zxingcpp.create_barcode(data, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
    view = memoryview(code.to_image(scale=1, add_quiet_zones=False))
    height, width = view.shape
    drawn = PILImage.frombytes("L", (width, height), view.tobytes()).point(_DARK_TO_0)
    modules = PILImage.new("L", (width + 2 * QR_BORDER_MODULES, height + 2 * QR_BORDER_MODULES), 255)
    modules.paste(drawn, (QR_BORDER_MODULES, QR_BORDER_MODULES))
    return modules


#: zxing-cpp's grey levels to modules: below 128 dark (0), else light (255)
_DARK_TO_0 = [0] * 128 + [255] * 128


def qr_matrix(data: str) -> list[list[bool]]:
    """The QR modules (with quiet zone) the way printers encode it: model 2, ECC level M."""
    modules = _qr_modules(data)
    values = modules.tobytes()
    n = modules.width
    return [[v == 0 for v in values[row:row + n]] for row in range(0, len(values), n)]


def qr_module_size(data: str, size_dots: int, width_dots: int) -> int:
    """Dots per module so the whole code (quiet zone included) is about size_dots wide
    (0 = QR_DEFAULT_DOTS). ESC/POS GS ( k fn 67 allows 1..16."""
    modules = _qr_modules(data).height
    wanted = size_dots or QR_DEFAULT_DOTS
    wanted = min(wanted, width_dots - 2 * SIDE_MARGIN_DOTS)
    return max(1, min(16, wanted // modules))


def qr_image(data: str, module_size: int) -> PILImage.Image:
    """A 1-bit QR image, quiet zone included, each module module_size dots square."""
    modules = _qr_modules(data)
    n = modules.height
    small = modules.convert("1")
    return small.resize((n * module_size, n * module_size), PILImage.Resampling.NEAREST)


__all__ = ["QR_BORDER_MODULES", "QR_DEFAULT_DOTS", "SIDE_MARGIN_DOTS", "qr_image", "qr_matrix", "qr_module_size"]
