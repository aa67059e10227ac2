"""The five device contracts the kiosk core programs against, and the values they exchange.

Flows see only these classes; drivers and simulators implement them. Every method that talks
to hardware is async and takes its own `timeout` (separate from task cancellation).
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import Any

from devices.base import Device, InvalidData, MediaError

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
        Reversal): REVERSED, or DECLINED / NOT_FOUND when the terminal refuses. `amount_rials`
        is the ReversedAmount: the sale's amount reverses it, less is a partial referenced
        refund of that share (several may follow, each under its own `ref`, up to what is
        left of the sale; more than is left is refused). The REVERSED result's
        `amount_rials` is what the terminal says it gave back (0 when it does not say)."""

    @abc.abstractmethod
    async def abort(self, ref: MessageRef) -> None:
        """Abort the payment `ref` while it is in progress (the citizen pressed cancel)."""

    async def settle_cancelled(self, ref: MessageRef, *, timeout: float = 90.0) -> bool:
        """After a pay of `ref` was cancelled: abort it, and return only once the terminal has
        answered that payment request itself (True), or after `timeout` (False). Until then a
        TransactionStatus could reach the terminal before the payment request did and be
        answered "not found" for a sale about to start. This default aborts once; a driver that
        can see its request in flight (nexo-http) waits for it."""
        await self.abort(ref)
        return True


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
# The contract speaks MIFARE Classic 1K, the card Tehran's stored-value transit cards are: a
# transit flow detects the card, authenticates a sector with a key, reads and writes 16-byte
# blocks, moves value blocks with the card's own value operations and ends the session. A PN532
# implements it over UART; a PC/SC reader would map the same calls to its storage-card commands
# (load key, general authenticate, read/update binary) and its value-block command. What the
# blocks mean (the transit card format) lives in devices/transit_card/, not in any driver.


class KeyType(enum.StrEnum):
    """MIFARE Classic key slot of a sector; the value is the letter, `auth_command` the byte."""

    A = "A"
    B = "B"

    @property
    def auth_command(self) -> int:
        return 0x60 if self is KeyType.A else 0x61


class AuthenticationError(MediaError):
    """The card refused the key (wrong key, another card's key). The card is halted: select it
    again before the next command."""

    state_after = None  # about the card; the reader is as usable as before

    def __init__(self, message: str, *, device: str = "") -> None:
        super().__init__(message, device=device, error_code="authFailed")


class AccessDenied(MediaError):
    """The card (still on the reader) refused a read, write, value operation or transfer: its
    access bits forbid it with the key used. The card drops its authentication."""

    state_after = None  # about the card; the reader is as usable as before

    def __init__(self, message: str, *, device: str = "") -> None:
        super().__init__(message, device=device, error_code="accessDenied")


class NoCard(MediaError):
    """No card on the reader."""

    state_after = None  # about the card; the reader is as usable as before

    def __init__(self, message: str, *, device: str = "") -> None:
        super().__init__(message, device=device, error_code="noCard")


class CardRemoved(MediaError):
    """The card left the field during an operation. A write it interrupted may or may not have
    landed: the card's own counters tell on its next tap."""

    state_after = None  # about the card; the reader is as usable as before

    def __init__(self, message: str, *, device: str = "") -> None:
        super().__init__(message, device=device, error_code="cardRemoved")


class WrongCard(MediaError):
    """A card other than the one the operation is about is on the reader (the citizen was asked
    to place the same card again and placed another)."""

    state_after = None  # about the card; the reader is as usable as before

    def __init__(self, message: str, *, device: str = "") -> None:
        super().__init__(message, device=device, error_code="wrongCard")


@dataclass(frozen=True)
class CardInfo:
    uid: str  # hex, 4 or 7 bytes
    atqa: str = ""
    sak: int = 0
    card_type: str = "mifare-classic-1k"

    @property
    def uid_bytes(self) -> bytes:
        return bytes.fromhex(self.uid)


class CardReader(Device, abc.ABC):
    """A contactless reader for MIFARE Classic cards. Block numbers are absolute (0..63 on a 1K
    card); a sector is authenticated through any of its blocks. Failures are typed: NoCard,
    AuthenticationError, AccessDenied, CardRemoved (and the DeviceError family for the reader
    itself). After AuthenticationError or AccessDenied the card must be selected again."""

    device_class = "CardReader"

    @abc.abstractmethod
    async def wait_for_card(self, *, timeout: float = 30.0) -> CardInfo:
        """Poll until a card is on the reader (CommandTimeout when none comes in time)."""

    @abc.abstractmethod
    async def card_present(self) -> CardInfo | None:
        """The card on the reader now, or None (one poll, no waiting)."""

    @abc.abstractmethod
    async def select(self, *, timeout: float | None = None) -> CardInfo:
        """Select the card on the field: a fresh session, any authentication dropped. NoCard
        when the field is empty."""

    @abc.abstractmethod
    async def authenticate(self, block: int, key_type: KeyType, key: bytes, uid: bytes,
                           *, timeout: float | None = None) -> None:
        """Authenticate the sector holding `block` with the 6-byte `key` of slot `key_type`
        for the card `uid` (4 or 7 bytes, as selected)."""

    @abc.abstractmethod
    async def read_block(self, block: int, *, timeout: float | None = None) -> bytes:
        """The 16 bytes of `block` (its sector authenticated)."""

    @abc.abstractmethod
    async def write_block(self, block: int, data: bytes, *, timeout: float | None = None) -> None:
        """Write 16 bytes to `block`. A card pulled mid-write may keep old, new or mixed bytes."""

    @abc.abstractmethod
    async def increment(self, block: int, amount: int, *, timeout: float | None = None) -> None:
        """Value block plus `amount` (0..2^31-1) into the card's transfer buffer."""

    @abc.abstractmethod
    async def decrement(self, block: int, amount: int, *, timeout: float | None = None) -> None:
        """Value block minus `amount` into the card's transfer buffer."""

    @abc.abstractmethod
    async def restore(self, block: int, *, timeout: float | None = None) -> None:
        """Copy a value block into the transfer buffer (TRANSFER within the same sector)."""

    @abc.abstractmethod
    async def transfer(self, block: int, *, timeout: float | None = None) -> None:
        """Write the transfer buffer to `block`; only right after increment/decrement/restore."""

    @abc.abstractmethod
    async def halt(self, *, timeout: float | None = None) -> None:
        """End the session with the card (it must be selected again before the next command)."""


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
