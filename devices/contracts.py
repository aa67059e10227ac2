"""The five device contracts the kiosk core programs against, and the values they exchange.

Flows see only these classes; drivers and simulators implement them. Every method that talks
to hardware is async and takes its own `timeout` (separate from task cancellation).
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import Any

from devices.base import Device, InvalidData

# --- payment terminal ---------------------------------------------------------------------


class PaymentOutcome(enum.StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"
    NOT_FOUND = "notFound"  # TransactionStatus: the terminal never saw this reference
    IN_PROGRESS = "inProgress"  # TransactionStatus: still being processed
    REVERSED = "reversed"


@dataclass(frozen=True)
class PoiTransaction:
    """The terminal's own id of a sale (nexo POITransactionID): its TransactionID and the
    TimeStamp the terminal gave it. A reversal names the original sale by both."""

    transaction_id: str
    timestamp: str


@dataclass(frozen=True)
class PaymentResult:
    """What a terminal said about one sale. `reference` is our transaction id (the nexo
    SaleTransactionID); `poi_reference`/`poi_timestamp` are the terminal's own
    (POITransactionID); `rrn`/`stan` are the acquirer's reference numbers shown on receipts."""

    outcome: PaymentOutcome
    reference: str
    amount_rials: int = 0
    poi_reference: str = ""
    rrn: str = ""
    stan: str = ""
    masked_pan: str = ""  # e.g. 603799******1234, never the full number
    error_condition: str = ""  # nexo ErrorCondition on failure (Refusal, Aborted, Busy, …)
    message: str = ""
    poi_timestamp: str = ""

    @property
    def approved(self) -> bool:
        return self.outcome == PaymentOutcome.APPROVED

    @property
    def poi_transaction(self) -> PoiTransaction | None:
        if not self.poi_reference or not self.poi_timestamp:
            return None
        return PoiTransaction(self.poi_reference, self.poi_timestamp)


class AmountTooLarge(InvalidData):
    """An amount over what the terminal accepts (the Terminal API schema's RequestedAmount
    maximum, or the acquirer's lower limit): refused before the terminal is asked."""

    def __init__(self, message: str, *, device: str = "", error_code: str = "amountTooLarge") -> None:
        super().__init__(message, device=device, error_code=error_code)


class MessageRefError(ValueError):
    """A journaled message reference that cannot be read back."""


@dataclass(frozen=True)
class MessageRef:
    """How a terminal finds one request again: nexo keys a transaction by the message
    reference (SaleID, ServiceID, MessageCategory), never by our own sale reference. It is made
    *before* the request leaves (`PaymentTerminal.new_ref`) so the caller can journal it: after
    a restart the journal is the only place the ServiceID lives, and a terminal asked without
    it cannot say what became of the sale.

    `category` is "Payment" or "Reversal"; `reference` and `timestamp` are the
    SaleTransactionID we send; `poi_id` names the terminal that was asked, so a replaced
    terminal is never asked about another terminal's sale."""

    category: str
    reference: str
    service_id: str
    sale_id: str
    poi_id: str
    timestamp: str

    CATEGORIES = ("Payment", "Reversal")

    def to_dict(self) -> dict[str, str]:
        return {"category": self.category, "reference": self.reference, "service_id": self.service_id,
                "sale_id": self.sale_id, "poi_id": self.poi_id, "timestamp": self.timestamp}

    @classmethod
    def from_dict(cls, data: Any) -> MessageRef:
        keys = ("category", "reference", "service_id", "sale_id", "poi_id", "timestamp")
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) and data.get(k) for k in keys):
            raise MessageRefError(f"not a message reference: {data!r}"[:200])
        if data["category"] not in cls.CATEGORIES:
            raise MessageRefError(f"message reference of unknown category {data['category']!r}")
        return cls(*(data[k] for k in keys))


class PaymentTerminal(Device, abc.ABC):
    device_class = "PaymentTerminal"

    @abc.abstractmethod
    def new_ref(self, reference: str, category: str = "Payment") -> MessageRef:
        """A fresh message reference for the next Payment or Reversal of `reference`. No I/O:
        the caller journals it, then passes it to `pay` or `reverse`. Each request needs its
        own (terminals refuse a ServiceID used again)."""

    def lost_ref(self, reference: str) -> MessageRef | None:
        """A reference to ask `transaction_status` about a payment whose ServiceID was lost (a
        PAYING row journaled without one), by our sale reference alone — only a terminal that
        documents that lookup can answer; None (the default) where it cannot."""
        return None

    @abc.abstractmethod
    async def pay(self, ref: MessageRef, amount_rials: int, *, timeout: float = 90.0) -> PaymentResult:
        """Ask for a card payment under `ref` (category Payment). Raises CommandTimeout when
        the terminal does not answer in time (the outcome is then unknown: ask
        `transaction_status(ref)`)."""

    @abc.abstractmethod
    async def transaction_status(self, ref: MessageRef, *, timeout: float = 15.0) -> PaymentResult:
        """What became of the request `ref` names. For a Payment: APPROVED or DECLINED as the
        terminal first answered it — a payment reversed later still reads APPROVED, as on a
        real terminal; for a Reversal: REVERSED (done) or DECLINED (refused). NOT_FOUND when
        the request never reached the terminal, IN_PROGRESS while it runs."""

    @abc.abstractmethod
    async def reverse(self, ref: MessageRef, amount_rials: int, original: PoiTransaction, *,
                      timeout: float = 30.0) -> PaymentResult:
        """Return the money of the approved sale `original` to the card, under `ref` (category
        Reversal): REVERSED, or DECLINED / NOT_FOUND when the terminal refuses."""

    @abc.abstractmethod
    async def abort(self, ref: MessageRef) -> None:
        """Abort the payment `ref` while it is in progress (the citizen pressed cancel)."""


# --- receipt printer -------------------------------------------------------------------------


class PaperState(enum.StrEnum):
    OK = "ok"
    LOW = "low"
    OUT = "out"
    JAMMED = "jammed"
    UNKNOWN = "unknown"


class QRPayload(str):
    """The data of a ("qr", …) PrintJob part. It *is* the payload string (("qr", str) is the
    contract) and also carries the module size the layout chose, so the driver prints the
    size the layout measured (0 = the driver's default)."""

    module_size: int

    def __new__(cls, data: str, module_size: int = 0) -> "QRPayload":
        obj = super().__new__(cls, data)
        obj.module_size = module_size
        return obj


@dataclass(frozen=True)
class PrintJob:
    """A rendered document ready for the printer: raster blocks and native QR codes in order.
    The caller lays out and renders (fonts, shaping, bidi are the kiosk's); the driver only
    encodes and sends.

    `parts` is a list of ("image", 1-bit PIL.Image, width a multiple of 8, at most the
    paper's width) | ("qr", str or QRPayload) | ("text", ASCII str) | ("feed", lines)."""

    parts: list[tuple[str, Any]]
    cut: bool = True
    job_id: str = ""


class ReceiptPrinter(Device, abc.ABC):
    device_class = "ReceiptPrinter"

    @abc.abstractmethod
    async def print_job(self, job: PrintJob, *, timeout: float = 30.0) -> None:
        """Print; refuses (MediaError/DeviceOffline) when offline or out of paper."""

    @abc.abstractmethod
    async def paper_state(self, *, timeout: float = 5.0) -> PaperState:
        """Query the printer now (DLE EOT on ESC/POS printers)."""


# --- scanner ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScannedCode:
    format: str  # "QRCode", "Code128", "ITF", "DataMatrix", "PDF417", …
    text: str
    source: str = ""


class Scanner(Device, abc.ABC):
    device_class = "Scanner"

    @abc.abstractmethod
    async def read(self, *, timeout: float = 30.0) -> ScannedCode:
        """Wait for the next code (duplicates within the repeat window are dropped)."""


# --- transit card reader ---------------------------------------------------------------------


@dataclass(frozen=True)
class CardInfo:
    uid: str  # hex
    atqa: str = ""
    sak: int = 0
    card_type: str = "mifare-classic-1k"


class CardReader(Device, abc.ABC):
    device_class = "CardReader"

    @abc.abstractmethod
    async def wait_for_card(self, *, timeout: float = 30.0) -> CardInfo: ...

    @abc.abstractmethod
    async def card_present(self) -> CardInfo | None: ...


# --- card dispenser --------------------------------------------------------------------------


class CardDispenser(Device, abc.ABC):
    device_class = "CardDispenser"

    @abc.abstractmethod
    async def dispense_to_reader(self, *, timeout: float = 15.0) -> None:
        """Move one card from the stacker to the read/write position."""

    @abc.abstractmethod
    async def eject(self, *, timeout: float = 15.0) -> None:
        """Present the card at the read position to the citizen."""

    @abc.abstractmethod
    async def capture(self, *, timeout: float = 15.0) -> None:
        """Move the card at the read position to the reject bin."""

    @abc.abstractmethod
    async def levels(self) -> dict[str, Any]:
        """{"stacker": "ok|low|empty", "stacker_count": n, "bin": "ok|full", "bin_count": n}"""


CONTRACTS: dict[str, type[Device]] = {
    c.device_class: c for c in (PaymentTerminal, ReceiptPrinter, Scanner, CardReader, CardDispenser)
}


@dataclass(frozen=True)
class DeviceConfig:
    """One device entry in config: {"name": "printer", "type": "escpos-network", ...options}."""

    name: str
    type: str
    options: dict[str, Any] = field(default_factory=dict)
