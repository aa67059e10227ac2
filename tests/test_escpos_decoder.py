"""The ESC/POS decoder: exact commands python-escpos emits, typed errors with offsets on bad
bytes, and a fuzz run where only EscposDecodeError may ever escape."""

from __future__ import annotations

import pytest
from escpos.printer import Dummy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.printer.decoder import EscposDecodeError, decode_escpos
from devices.printer.escpos_driver import job_to_escpos_bytes
from kiosk.receipts.layout import QR, Document, Heading, Row, render

REAL_JOB = job_to_escpos_bytes(render(Document((
    Heading("رسید"), Row("مبلغ", "170000"), QR("https://verify.example/r?tx=42", caption="اسکن کنید"),
))))


def test_text_feeds_styles_and_every_cut_form_are_decoded() -> None:
    p = Dummy(profile="TM-T20II")
    p.hw("INIT")
    p.set(align="center", bold=True)
    p._raw(b"\x1d!\x11")  # GS ! : double width and height
    p.textln("RECEIPT 42")
    p.print_and_feed(2)
    p._raw(b"\x1bJ\x10")  # ESC J: feed 16 dots
    p.cut()
    p.cut(mode="PART")
    p.cut(feed=False)
    p._raw(b"\x1dV\x41\x03")  # GS V function B
    out = decode_escpos(p.output)
    assert out.texts == ["RECEIPT 42"]
    assert out.cuts == 4
    for name in ("ESC @ init", "ESC a align", "ESC E bold", "GS ! size", "ESC J feed-dots", "GS V cut"):
        assert name in out.commands
    # the double-height line is 2 x 24 dots, taller than the 30-dot line spacing
    assert out.image.height == 48 + 2 * 30 + 16 + 6 * 30 * 2 + 3
    assert out.unhandled == []


def test_status_queries_inside_a_job_are_ignored_by_the_decoder() -> None:
    out = decode_escpos(b"\x10\x04\x01\x10\x04\x04" + REAL_JOB)
    assert out.qr_codes == ["https://verify.example/r?tx=42"]
    assert out.commands[:2] == ["DLE EOT status", "DLE EOT status"]


def test_truncated_raster_names_the_offset_where_the_command_starts() -> None:
    start = REAL_JOB.index(b"\x1dv0")
    with pytest.raises(EscposDecodeError) as err:
        decode_escpos(REAL_JOB[: start + 20])
    assert err.value.offset == start
    assert f"offset {start}" in str(err.value)


def test_unknown_escape_is_a_decode_error_not_a_crash() -> None:
    with pytest.raises(EscposDecodeError) as err:
        decode_escpos(b"\x1b@\x1b\x99")
    assert err.value.offset == 2


def test_endless_feeds_are_refused_instead_of_allocating_paper() -> None:
    with pytest.raises(EscposDecodeError):
        decode_escpos(b"\x1bd\xff" * 20)


def _mutated(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    buf = bytearray(data)
    for pos, val in edits:
        buf[pos % len(buf)] = val
    return bytes(buf[: cut % (len(buf) + 1)]) if cut % 3 == 0 else bytes(buf)


def _decode_or_typed_error(data: bytes) -> None:
    try:
        out = decode_escpos(data, width_dots=576)
    except EscposDecodeError as exc:
        assert 0 <= exc.offset <= len(data)
    else:
        assert out.image.width == 576


_RANDOM = st.binary(max_size=300)
_MUTATED = st.builds(
    _mutated, st.just(REAL_JOB),
    st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=6),
    st.integers(0, 1 << 20),
)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(_RANDOM, _MUTATED))
def test_fuzz_random_and_mutated_receipts_only_raise_decode_errors(data: bytes) -> None:
    _decode_or_typed_error(data)
