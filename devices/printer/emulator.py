"""Virtual ESC/POS printers on real wires: a raw-9100 TCP server and a pseudo-terminal serial
printer. They capture jobs and answer DLE EOT real-time status the way Epson TM printers do.

Status bytes (Epson ESC/POS reference, DLE EOT n; bits 1 and 4 are always 1):
  n=1 printer:   bit 3 off-line
  n=2 off-line:  bit 2 cover open, bit 5 stopped by paper end, bit 6 error
  n=3 error:     all clear here
  n=4 paper:     bits 2-3 roll near end, bits 5-6 roll end
Queries are answered only at command boundaries, so bytes 10 04 inside raster data are data.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import socketserver
import threading
import time
from typing import Any

from devices.printer.decoder import (DecodedReceipt, EscposDecodeError, _Truncated, decode_escpos,
                                     next_command)
from devices.pty import PtyPort

log = logging.getLogger("devices.printer.emulator")

_FIXED = 0x12


class _PrinterModel:
    """The printer's mechanism and status; shared by every wire the emulator speaks."""

    def __init__(self, width_dots: int) -> None:
        self.width_dots = width_dots
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.paper = "ok"
        self.online = True
        self.cover_open = False
        self.jobs: list[bytes] = []
        self.drop_after: int | None = None
        self.paper_out_after: int | None = None  # printable bytes until the roll runs out
        #: how long the mechanism takes to print a job (seconds, at its cut); the printer reads
        #: nothing more from the host meanwhile, as a real one whose buffer is full does, so a
        #: status query sent after the job is answered once the job is out (benchmarks use ~1 s)
        self.print_seconds = 0.0

    def status_byte(self, n: int) -> int:
        with self.lock:
            paper_out = self.paper == "out"
            if n == 1:
                offline = (not self.online) or self.cover_open or paper_out
                return _FIXED | (0x08 if offline else 0)
            if n == 2:
                return (_FIXED | (0x04 if self.cover_open else 0) | (0x20 if paper_out else 0)
                        | (0x40 if not self.online else 0))
            if n == 3:
                return _FIXED
            # the near-end sensor also reads "near end" once the roll has run out
            return _FIXED | {"ok": 0, "low": 0x0C, "out": 0x0C | 0x60}[self.paper]

    def add_job(self, data: bytes) -> None:
        with self.changed:
            self.jobs.append(data)
            self.changed.notify_all()


class _Stream:
    """Incremental command splitter for one connection: finds DLE EOT at command boundaries."""

    def __init__(self, model: _PrinterModel) -> None:
        self.model = model
        self.buffer = bytearray()
        self.pos = 0
        self.printable = False  # anything other than status queries arrived
        self.inits: list[int] = []  # offsets of ESC @ commands (job starts on a serial line)
        self.cuts: list[int] = []  # offsets of GS V commands

    def feed(self, chunk: bytes) -> bytes:
        """Take bytes from the host; return the bytes the printer answers."""
        self.buffer += chunk
        answer = bytearray()
        while self.pos < len(self.buffer):
            try:
                cmd = next_command(self.buffer, self.pos)
            except _Truncated:
                break
            except EscposDecodeError:
                # a real printer ignores a byte it does not understand
                log.warning("emulator: unknown byte at offset %d ignored", self.pos)
                self.pos += 1
                self.printable = True
                continue
            if cmd.name == "DLE EOT status":
                answer.append(self.model.status_byte(cmd.args[0]))
            else:
                self.printable = True
                self._consume_paper(cmd.end - cmd.offset)
                if cmd.name == "ESC @ init":
                    self.inits.append(cmd.offset)
                elif cmd.name == "GS V cut":
                    self.cuts.append(cmd.offset)
                    if self.model.print_seconds > 0:
                        time.sleep(self.model.print_seconds)
            self.pos = cmd.end
        return bytes(answer)

    def _consume_paper(self, n: int) -> None:
        with self.model.lock:
            if self.model.paper_out_after is None:
                return
            self.model.paper_out_after -= n
            if self.model.paper_out_after <= 0:
                self.model.paper = "out"
                self.model.paper_out_after = None


class _Handler(socketserver.BaseRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        emulator = self.server.emulator
        model = emulator._model
        stream = _Stream(model)
        sock: socket.socket = self.request
        sock.settimeout(0.1)
        with model.lock:
            drop_after, model.drop_after = model.drop_after, None
        while not emulator._stopping.is_set():
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            if drop_after is not None and len(stream.buffer) + len(chunk) >= drop_after:
                stream.feed(chunk[: max(0, drop_after - len(stream.buffer))])
                emulator.dropped.append(bytes(stream.buffer))
                # RST, not FIN: the way a printer that loses power or resets looks on the wire
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.close()
                return
            answer = stream.feed(chunk)
            if answer:
                try:
                    sock.sendall(answer)
                except OSError:
                    break
        if stream.printable:
            model.add_job(bytes(stream.buffer))


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: "NetworkPrinterEmulator"


class _Controls:
    """Test controls shared by both emulators."""

    _model: _PrinterModel

    @property
    def jobs(self) -> list[bytes]:
        with self._model.lock:
            return list(self._model.jobs)

    def receipts(self) -> list[DecodedReceipt]:
        """Every job as paper. Like a printer, bytes it does not know are skipped, not fatal:
        each receipt lists what was not drawn in `unhandled` (logged as a warning too)."""
        out = []
        for n, job in enumerate(self.jobs, 1):
            receipt = decode_escpos(job, width_dots=self._model.width_dots, strict=False)
            if receipt.unhandled:
                log.warning("emulator: job %d has commands it did not draw: %s", n, ", ".join(receipt.unhandled[:20]))
            out.append(receipt)
        return out

    def set_print_seconds(self, seconds: float) -> None:
        """How long each job takes to come out (see _PrinterModel.print_seconds)."""
        with self._model.lock:
            self._model.print_seconds = max(0.0, float(seconds))

    def set_paper(self, state: str) -> None:
        if state not in ("ok", "low", "out"):
            raise ValueError(f"paper must be 'ok', 'low' or 'out', not {state!r}")
        with self._model.lock:
            self._model.paper = state

    def set_online(self, online: bool) -> None:
        with self._model.lock:
            self._model.online = bool(online)

    def set_cover_open(self, cover_open: bool) -> None:
        with self._model.lock:
            self._model.cover_open = bool(cover_open)

    def fail_after_bytes(self, n: int) -> None:
        """The next connection is dropped (TCP reset) once n bytes have arrived."""
        with self._model.lock:
            self._model.drop_after = n

    def paper_out_after_bytes(self, n: int) -> None:
        """The roll runs out once n more bytes of printing (not status queries) arrived."""
        with self._model.lock:
            self._model.paper_out_after = n

    def wait_for_jobs(self, n: int, timeout: float = 5.0) -> list[bytes]:
        """Block until at least n jobs were captured; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._model.changed:
            while len(self._model.jobs) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._model.jobs)} of {n} print jobs after {timeout}s")
                self._model.changed.wait(left)
            return list(self._model.jobs)


class NetworkPrinterEmulator(_Controls):
    """A raw-9100 ESC/POS printer on a real TCP socket. Each connection that carries more than
    status queries is one job."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, width_dots: int = 576) -> None:
        self.host = host
        self.port = port
        self._model = _PrinterModel(width_dots)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.dropped: list[bytes] = []

    def start(self) -> tuple[str, int]:
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.emulator = self
        self._server = server
        self.host, self.port = server.server_address[:2]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="escpos-emulator", daemon=True)
        self._thread.start()
        return self.host, self.port

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "NetworkPrinterEmulator":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class PtyPrinterEmulator(_Controls):
    """A serial ESC/POS printer behind a pseudo-terminal: the driver opens `devfile` with
    pyserial, the emulator reads the master side. Jobs are split at ESC @ (initialize).
    `devfile` is the stable symlink to the pty, ready from construction."""

    def __init__(self, *, width_dots: int = 576) -> None:
        self._model = _PrinterModel(width_dots)
        self._port = PtyPort("printer", prefix="kiosk-printer-")
        self.devfile = self._port.plug()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream = _Stream(self._model)
        self._job_starts: list[int] = []

    def start(self) -> str:
        self._thread = threading.Thread(target=self._run, name="escpos-pty-emulator", daemon=True)
        self._thread.start()
        return self.devfile

    def _run(self) -> None:
        master = self._port.master_fd
        if master is None:
            return
        while not self._stopping.is_set():
            ready, _, _ = select.select([master], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break  # the slave side closed; nothing more will come
            answer = self._stream.feed(chunk)
            if answer:
                os.write(master, answer)
            self._collect_jobs()

    def _collect_jobs(self) -> None:
        """A serial line has no connections: a job runs from one ESC @ to the next, and the
        last one is complete once a cut has arrived."""
        stream = self._stream
        data = bytes(stream.buffer[: stream.pos])
        starts = stream.inits
        with self._model.lock:
            known = len(self._model.jobs)
        complete = []
        for k, start in enumerate(starts):
            end = starts[k + 1] if k + 1 < len(starts) else len(data)
            chunk = data[start:end]
            if k + 1 < len(starts) or any(c >= start for c in stream.cuts):
                complete.append(chunk)
        for job in complete[known:]:
            self._model.add_job(job)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._port.close()


__all__ = ["NetworkPrinterEmulator", "PtyPrinterEmulator"]
