"""QR codes the way receipt printers draw them (model 2, ECC level M): the module matrix, the
module size for a wanted print size, and a raster image for printers without native QR."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from PIL import Image as PILImage

if TYPE_CHECKING:
    import numpy as np

#: QR quiet zone in modules (ISO/IEC 18004 asks for 4)
QR_BORDER_MODULES = 4
#: default printed QR edge when no size is asked for
QR_DEFAULT_DOTS = 256
#: dots a layout leaves blank at each side of the paper; a QR never reaches into them
SIDE_MARGIN_DOTS = 8


@functools.lru_cache(maxsize=64)
def _qr_modules(data: str) -> np.ndarray:
    # zxing-cpp's encoder (C++) takes ~1 ms where the pure-Python `qrcode` took ~35 ms per
    # receipt, most of the fee transaction's software time; same version and ECC level.
    # numpy and zxing-cpp (~0.1 s, ~19 MB) are imported at the first code, not with the driver:
    # the kiosk's start to its attract screen does not pay for them.
    import numpy as np
    import zxingcpp

    code = zxingcpp.create_barcode(data, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
    dark = np.asarray(code.to_image(scale=1, add_quiet_zones=False)) < 128
    return np.pad(dark, QR_BORDER_MODULES, constant_values=False)


def qr_matrix(data: str) -> list[list[bool]]:
    """The QR modules (with quiet zone) the way printers encode it: model 2, ECC level M."""
    return _qr_modules(data).tolist()


def qr_module_size(data: str, size_dots: int, width_dots: int) -> int:
    """Dots per module so the whole code (quiet zone included) is about size_dots wide
    (0 = QR_DEFAULT_DOTS). ESC/POS GS ( k fn 67 allows 1..16."""
    modules = _qr_modules(data).shape[0]
    wanted = size_dots or QR_DEFAULT_DOTS
    wanted = min(wanted, width_dots - 2 * SIDE_MARGIN_DOTS)
    return max(1, min(16, wanted // modules))


def qr_image(data: str, module_size: int) -> PILImage.Image:
    """A 1-bit QR image, quiet zone included, each module module_size dots square."""
    modules = _qr_modules(data)
    n = modules.shape[0]
    import numpy as np

    small = PILImage.fromarray(np.where(modules, 0, 255).astype(np.uint8), "L").convert("1")
    return small.resize((n * module_size, n * module_size), PILImage.Resampling.NEAREST)


__all__ = ["QR_BORDER_MODULES", "QR_DEFAULT_DOTS", "SIDE_MARGIN_DOTS", "qr_image", "qr_matrix", "qr_module_size"]
