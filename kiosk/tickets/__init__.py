"""QR tickets' signed payload (codec: format, signing with the kiosk's receipt key, the gate's
offline verification) and the printed ticket (document). Sibling of kiosk.receipts: the same
key, a different prefix, so neither can pass for the other."""

from kiosk.tickets.codec import (
    KIND_CODES,
    MAX_PAYLOAD_CHARS,
    PREFIX,
    TRIPS_OF_KIND,
    InvalidTicket,
    OfflineGate,
    TicketData,
    TicketSigner,
    TripsUsed,
    VerifiedTicket,
    decode_body,
    encode_body,
    load_ticket_signer,
    verify_ticket,
)
from kiosk.tickets.document import TITLES, TicketSlip, build_ticket_document

__all__ = ["KIND_CODES", "MAX_PAYLOAD_CHARS", "PREFIX", "TITLES", "TRIPS_OF_KIND", "InvalidTicket", "OfflineGate",
           "TicketData", "TicketSigner", "TicketSlip", "TripsUsed", "VerifiedTicket", "build_ticket_document",
           "decode_body", "encode_body", "load_ticket_signer", "verify_ticket"]
