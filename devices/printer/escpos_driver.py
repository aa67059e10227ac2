"""The ESC/POS receipt printer driver (python-escpos transports: usb, serial, network 9100,
file) and `job_to_escpos_bytes`, the pure PrintJob → bytes encoding it sends. The driver takes
rendered raster images (+ QR data for the printer's native QR): it encodes and sends, and
knows nothing of fonts or layout.

Status follows Epson's real-time DLE EOT: n=1 printer status (bit 3 = offline) and n=4 roll
paper sensor (bits 2,3 = near end; bits 5,6 = paper end), as python-escpos reads them.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import TYPE_CHECKING, Any

from devices.printer import escpos_env  # noqa: F401,I001  (before escpos: keeps its cache out of /tmp)
from PIL import Image as PILImage

from devices.base import (DeviceIdentity, DeviceOffline, DeviceState, HardwareError, InvalidData,
                          MediaError, register)
from devices.contracts import PaperState, PrintJob, ReceiptPrinter
from devices.printer.qr import QR_DEFAULT_DOTS, qr_image, qr_module_size
from devices.printer.profile import DEFAULT_PROFILE, PrinterProfile, load_profile

if TYPE_CHECKING:
    from escpos.escpos import Escpos

# python-escpos's printers and commands (escpos.escpos, escpos.printer: qrcode, python-barcode,
# pyserial, pyusb) are imported where a job is encoded or a transport made, not with the module:
# `kiosk ui` imports this driver on its way to the attract screen. escpos_env (above) stays
# first, so they still come through it.

log = logging.getLogger("devices.printer.escpos")

#: DLE EOT 1 bit 3: the printer is off-line (cover open, paper end, error)
_OFFLINE_BIT = 0x08
#: DLE EOT 4 bits 2-3 near end, bits 5-6 paper end; bits 1 and 4 are fixed 1, bits 0 and 7 fixed 0
_NEAR_END_BITS = 0x0C
_PAPER_END_BITS = 0x60
_FIXED_MASK, _FIXED_VALUE = 0x93, 0x12

CONNECTIONS = ("usb", "serial", "network", "file")
#: connections that can read DLE EOT answers back (a file or a spooler cannot)
STATUS_CONNECTIONS = frozenset({"usb", "serial", "network"})


def _paper_from_status(byte: int) -> PaperState:
    if byte & _PAPER_END_BITS:
        return PaperState.OUT
    if byte & _NEAR_END_BITS:
        return PaperState.LOW
    return PaperState.OK


_INVERT = bytes(255 - b for b in range(256))


def raster_command(image: PILImage.Image) -> bytes:
    """GS v 0 (print raster bit image, normal density) for a 1-bit image whose width is a
    multiple of 8. Same bytes python-escpos's image(impl="bitImageRaster") sends, without its
    RGBA round trip (~9 ms a receipt, most of the encoding time)."""
    mono = image if image.mode == "1" else image.convert("1")
    if mono.width % 8:
        raise InvalidData(f"raster width {mono.width} is not a multiple of 8", error_code="imageWidth")
    width_bytes = mono.width // 8
    # Pillow packs "1" images MSB first with 1 = white; ESC/POS raster wants 1 = black
    data = mono.tobytes().translate(_INVERT)
    return (b"\x1dv0\x00" + width_bytes.to_bytes(2, "little") + mono.height.to_bytes(2, "little") + data)


def job_to_escpos_bytes(job: PrintJob, profile: PrinterProfile | str = DEFAULT_PROFILE) -> bytes:
    """Encode a PrintJob as the exact ESC/POS bytes the driver sends (pure, no I/O).

    Raster images go as GS v 0 (bitImageRaster); QR parts as the printer's native GS ( k
    when the profile has one, else as a raster QR; feeds as ESC d; cut as GS V."""
    from escpos.constants import QR_ECLEVEL_M
    from escpos.printer import Dummy

    prof = load_profile(profile) if isinstance(profile, str) else profile
    if not prof.raster_image:
        raise InvalidData(f"profile {prof.name} cannot print raster images (Persian needs them)",
                          error_code="unsupportedProfile")
    p = Dummy(profile=prof.name)
    p.hw("INIT")
    for part in job.parts:
        if not (isinstance(part, tuple) and len(part) == 2):
            raise InvalidData(f"print job part must be (kind, value), not {part!r}", error_code="badJob")
        kind, value = part
        if kind == "image":
            if value.width > prof.width_dots:
                raise InvalidData(f"image is {value.width} dots wide, paper takes {prof.width_dots}",
                                  error_code="imageTooWide")
            p._raw(raster_command(value))
        elif kind == "qr":
            data = str(value)
            module = getattr(value, "module_size", 0) or qr_module_size(data, QR_DEFAULT_DOTS, prof.width_dots)
            if prof.native_qr:
                p.set(align="center")
                p.qr(data, ec=QR_ECLEVEL_M, size=module, native=True)
                p.print_and_feed(0)  # GS ( k fn 81 prints; ESC d 0 ends the line before re-aligning
                p.set(align="left")
            else:
                img = qr_image(data, module)
                canvas = PILImage.new("1", (prof.width_dots, img.height), 1)
                canvas.paste(img, ((prof.width_dots - img.width) // 2, 0))
                p.image(canvas, impl="bitImageRaster")
        elif kind == "feed":
            lines = int(value)
            while lines > 0:
                p.print_and_feed(min(lines, 255))
                lines -= 255
        elif kind == "text":
            p.text(str(value))
        else:
            raise InvalidData(f"unknown print job part {kind!r}", error_code="badJob")
    if job.cut:
        p.cut()
    return p.output


@register("escpos")
class EscposPrinter(ReceiptPrinter):
    """A receipt printer speaking ESC/POS over usb, serial, network (raw 9100) or a file.

    Options: connection ("usb"|"serial"|"network"|"file"), profile (escpos-printer-db name),
    usb: idVendor, idProduct; serial: devfile, baudrate; network: host, port (9100), timeout;
    file: devfile. A "file" connection cannot read status back, so jobs are not checked for
    paper first (consumables stay "unknown").
    """

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.connection = str(options.get("connection", "network"))
        if self.connection not in CONNECTIONS:
            raise InvalidData(f"{name}: connection must be one of {CONNECTIONS}, not {self.connection!r}",
                              device=name, error_code="badConfig")
        self.profile = load_profile(str(options.get("profile", DEFAULT_PROFILE)))
        self.identity = DeviceIdentity(model=self.profile.model, vendor=self.profile.vendor)
        self.capabilities = {
            "width_dots": self.profile.width_dots,
            "native_qr": self.profile.native_qr,
            "cut": self.profile.full_cut or self.profile.part_cut,
            "status": self.connection in STATUS_CONNECTIONS,
            "connection": self.connection,
        }
        self._printer: Escpos | None = None
        # python-escpos printers are not thread-safe; executor calls take this lock
        self._io_lock = threading.Lock()

    # --- transport -------------------------------------------------------------------------
    def _make_printer(self) -> Escpos:
        from escpos.printer import File, Network, Serial, Usb

        o = self.options
        prof = self.profile.name
        if self.connection == "network":
            if not o.get("host"):
                raise InvalidData(f"{self.name}: network printer needs a host", device=self.name,
                                  error_code="badConfig")
            return Network(str(o["host"]), int(o.get("port", 9100)), timeout=float(o.get("timeout", 10)),
                           profile=prof)
        if self.connection == "serial":
            return Serial(devfile=str(o.get("devfile", "/dev/ttyS0")), baudrate=int(o.get("baudrate", 9600)),
                          timeout=float(o.get("timeout", 2)), profile=prof)
        if self.connection == "file":
            return File(devfile=str(o.get("devfile", "/dev/usb/lp0")), profile=prof)
        if not Usb.is_usable():
            raise DeviceOffline(f"{self.name}: USB printing needs the pyusb package", device=self.name)
        return Usb(int(o.get("idVendor", 0)), int(o.get("idProduct", 0)),
                   timeout=int(o.get("timeout", 0)), profile=prof)

    def _connect(self) -> Escpos:
        """Open the transport (blocking). Network opens per job; others stay open."""
        from escpos.exceptions import DeviceNotFoundError

        printer = self._make_printer()
        try:
            printer.open()
            if self.connection == "network":
                # A DLE EOT query right after a job is a tiny write behind unacknowledged
                # data: without TCP_NODELAY it waits out the printer's delayed ACK (~40 ms).
                printer.device.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (DeviceNotFoundError, OSError) as exc:
            raise DeviceOffline(f"{self.name}: cannot reach printer: {exc}", device=self.name) from exc
        except Exception as exc:  # python-escpos raises its own errors (USBNotFoundError, …)
            if type(exc).__module__.startswith("escpos"):
                raise DeviceOffline(f"{self.name}: cannot reach printer: {exc}", device=self.name) from exc
            raise
        return printer

    def _with_printer(self, fn: Any) -> Any:
        """Run fn(printer) holding the I/O lock; a network connection lives for one call."""
        with self._io_lock:
            if self.connection == "network":
                printer = self._connect()
                try:
                    return fn(printer)
                finally:
                    printer.close()
            if self._printer is None:
                self._printer = self._connect()
            return fn(self._printer)

    async def _open(self) -> None:
        if self.connection in STATUS_CONNECTIONS:
            online, paper = await self.run_blocking(self._with_printer, self._read_status)
            self._apply_status(online, paper)
        else:
            await self.run_blocking(self._with_printer, lambda p: None)
            self.set_consumable("paper", str(PaperState.UNKNOWN))

    async def _close(self) -> None:
        def close() -> None:
            with self._io_lock:
                if self._printer is not None:
                    self._printer.close()
                    self._printer = None

        await self.run_blocking(close)

    # --- status ----------------------------------------------------------------------------
    def _query(self, printer: Escpos, request: bytes) -> int:
        """Send one DLE EOT and read its one status byte. No answer means the printer is
        gone: python-escpos's paper_status() would say "adequate" then; we fail closed."""
        try:
            printer._raw(request)
            device = printer.device
            answer = device.read(1) if self.connection == "serial" else printer._read()
        except OSError as exc:
            raise DeviceOffline(f"{self.name}: status query failed: {exc}", device=self.name) from exc
        if not answer:
            raise DeviceOffline(f"{self.name}: printer did not answer the status query", device=self.name)
        byte = answer[-1]
        if byte & _FIXED_MASK != _FIXED_VALUE:
            raise HardwareError(f"{self.name}: status byte {byte:#04x} is not an ESC/POS status",
                                device=self.name, error_code="badStatus")
        return byte

    def _read_status(self, printer: Escpos) -> tuple[bool, PaperState]:
        from escpos.constants import RT_STATUS_ONLINE, RT_STATUS_PAPER

        online = not (self._query(printer, RT_STATUS_ONLINE) & _OFFLINE_BIT)
        paper = _paper_from_status(self._query(printer, RT_STATUS_PAPER))
        return online, paper

    def _apply_status(self, online: bool, paper: PaperState) -> None:
        self.set_consumable("paper", str(paper))
        self.capabilities["online"] = online

    async def poll_status(self) -> PaperState:
        """Ask the printer how it is (the manager calls this every few seconds). Publishes
        {"paper": …} and state changes only when they change; a good answer restores ONLINE
        after an earlier fault. Returns the paper state (UNKNOWN for a file connection)."""
        if self.connection not in STATUS_CONNECTIONS:
            return PaperState.UNKNOWN
        if self.state == DeviceState.BUSY:  # a job is running; it checks status itself
            return PaperState(self.consumables.get("paper", "unknown"))
        try:
            online, paper = await self.run_blocking(self._with_printer, self._read_status)
        except (DeviceOffline, HardwareError) as exc:
            if self.state != DeviceState.OFFLINE:
                self._fail(exc if isinstance(exc, DeviceOffline) else DeviceOffline(str(exc), device=self.name))
            return PaperState.UNKNOWN
        self._apply_status(online, paper)
        if paper == PaperState.OUT:
            self._set_state(DeviceState.USER_ERROR)
        elif not online:
            self._set_state(DeviceState.OFFLINE)
        else:
            self._set_state(DeviceState.ONLINE)
        return paper

    async def paper_state(self, *, timeout: float = 5.0) -> PaperState:
        if self.connection not in STATUS_CONNECTIONS:
            return PaperState.UNKNOWN

        async def op() -> PaperState:
            online, paper = await self.run_blocking(self._with_printer, self._read_status)
            self._apply_status(online, paper)
            return paper

        return await self.command("paper_state", op, timeout=timeout)

    # --- printing --------------------------------------------------------------------------
    def _refuse_unless_ready(self, online: bool, paper: PaperState) -> None:
        if paper == PaperState.OUT:
            raise MediaError(f"{self.name}: out of paper, job refused", device=self.name, error_code="noMedia")
        if not online:
            raise DeviceOffline(f"{self.name}: printer is off-line (cover open or error), job refused",
                                device=self.name)

    def _send_job(self, printer: Escpos, payload: bytes) -> None:
        if self.connection in STATUS_CONNECTIONS:
            online, paper = self._read_status(printer)
            self._apply_status(online, paper)
            self._refuse_unless_ready(online, paper)
        try:
            printer._raw(payload)
            if self.connection == "file":
                printer.flush()
        except OSError as exc:
            raise HardwareError(f"{self.name}: connection lost during the job: {exc}", device=self.name,
                                error_code="connectionLost") from exc
        if self.connection in STATUS_CONNECTIONS:
            # A job the printer did not finish shows up here: the connection is gone (no
            # answer) or the paper ran out under the job.
            try:
                online, paper = self._read_status(printer)
            except DeviceOffline as exc:
                raise HardwareError(f"{self.name}: printer stopped answering during the job",
                                    device=self.name, error_code="connectionLost") from exc
            self._apply_status(online, paper)
            if paper == PaperState.OUT:
                raise MediaError(f"{self.name}: paper ran out during the job", device=self.name,
                                 error_code="noMedia")

    async def print_job(self, job: PrintJob, *, timeout: float = 30.0) -> None:
        """Print; refuses (MediaError noMedia / DeviceOffline) when the printer reports paper
        out or off-line right before the job; raises HardwareError/MediaError on a fault."""
        payload = await self.run_blocking(job_to_escpos_bytes, job, self.profile)
        if self.state in (DeviceState.HARDWARE_ERROR, DeviceState.USER_ERROR, DeviceState.OFFLINE):
            # The last fault may have cleared (paper loaded, cable back): ask before refusing.
            await self.poll_status()

        async def op() -> None:
            try:
                await self.run_blocking(self._with_printer, lambda p: self._send_job(p, payload))
            except DeviceOffline:
                if self.connection != "network":
                    self._drop_connection()
                raise
            except HardwareError:
                self._drop_connection()
                raise
            self.counters["jobs"] += 1
            self.counters["bytes"] += len(payload)
            if job.cut:
                self.counters["cuts"] += 1
            self._set_state(DeviceState.ONLINE)  # a good job clears an earlier fault
            log.info("printed job", extra={"device": self.name, "job_id": job.job_id, "bytes": len(payload)})

        await self.command("print", op, timeout=timeout)

    def _drop_connection(self) -> None:
        """Forget a broken persistent transport so the next call reconnects."""
        with self._io_lock:
            if self._printer is not None:
                try:
                    self._printer.close()
                except OSError:
                    log.warning("closing a broken printer connection failed", exc_info=True)
                self._printer = None


__all__ = ["EscposPrinter", "job_to_escpos_bytes", "CONNECTIONS", "STATUS_CONNECTIONS"]
