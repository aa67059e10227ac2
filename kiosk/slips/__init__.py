"""Municipal fee slips (فیش عوارض) printed at the kiosk: the document (document), the fee-kind
names (labels). Amounts in words live in kiosk.text.words."""

from kiosk.slips.document import (BARCODE_HEIGHT_DOTS, BARCODE_MODULE_DOTS, BARCODE_SYMBOLOGY, QR_DOTS,
                                  SlipNotPrintable, build_slip_document, mask_person_name, save_slip_png,
                                  slip_barcode, slip_bytes)
from kiosk.slips.labels import FEE_KINDS, fee_kind_label

__all__ = ["BARCODE_HEIGHT_DOTS", "BARCODE_MODULE_DOTS", "BARCODE_SYMBOLOGY", "FEE_KINDS", "QR_DOTS",
           "SlipNotPrintable", "build_slip_document", "fee_kind_label", "mask_person_name", "save_slip_png",
           "slip_barcode", "slip_bytes"]
