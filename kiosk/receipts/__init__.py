"""Signed receipts: the payload codec (codec), the kiosk's key on disk (keys), the printed
document (document) and its raster layout (layout). Today's public names are re-exported here
so `from kiosk.receipts import …` keeps working."""

from kiosk.receipts.codec import (
    JOURNAL_HASH_HEX,
    MAX_PAYLOAD_CHARS,
    PREFIX,
    PREFIX_V1,
    InvalidReceipt,
    ReceiptData,
    ReceiptSigner,
    ReceiptStatus,
    VerifiedReceipt,
    check_masked_pan,
    encode_body,
    load_public_key,
    public_key_b64,
    verify_payload,
)
from kiosk.receipts.document import build_document, print_receipt_bytes
from kiosk.receipts.keys import ReceiptKeyError, load_key, load_or_create_key, read_public_key_file

__all__ = [
    "JOURNAL_HASH_HEX",
    "MAX_PAYLOAD_CHARS",
    "PREFIX",
    "PREFIX_V1",
    "InvalidReceipt",
    "ReceiptData",
    "ReceiptKeyError",
    "ReceiptSigner",
    "ReceiptStatus",
    "VerifiedReceipt",
    "build_document",
    "check_masked_pan",
    "encode_body",
    "load_key",
    "load_or_create_key",
    "load_public_key",
    "print_receipt_bytes",
    "public_key_b64",
    "read_public_key_file",
    "verify_payload",
]
