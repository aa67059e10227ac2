"""PN532 frames (UM0701 §6.2): exact bytes, typed errors, and an incremental reader that
resynchronises after garbage — fuzzed."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.base import ProtocolError
from devices.pn532 import frames
from devices.pn532.frames import (
    ACK_FRAME,
    DataChecksumError,
    Frame,
    FrameError,
    FrameKind,
    FrameReader,
    LengthChecksumError,
    build_command,
    build_frame,
    build_response,
    parse_frame,
)


def test_get_firmware_version_command_is_the_datasheet_bytes() -> None:
    # UM0701 §7.2.2 / every PN532 library: 00 00 FF 02 FE D4 02 2A 00
    assert build_command(0x02) == bytes.fromhex("0000ff02fed4022a00")


def test_firmware_response_and_sam_configuration_bytes() -> None:
    assert build_response(0x02, bytes([0x32, 1, 6, 7])) == bytes.fromhex("0000ff06fad50332010607e800")
    assert build_command(0x14, b"\x01\x00\x00") == bytes.fromhex("0000ff05fbd4140100001700")


def test_ack_nack_and_error_frames_parse_to_their_kinds() -> None:
    assert parse_frame(frames.ACK).kind == FrameKind.ACK
    assert parse_frame(frames.NACK).kind == FrameKind.NACK
    assert parse_frame(frames.ERROR_FRAME).kind == FrameKind.ERROR


def test_information_frame_round_trips_with_code_and_params() -> None:
    frame = parse_frame(build_command(0x40, b"\x01\x30\x04"))
    assert frame == Frame(FrameKind.INFO, 0xD4, b"\x40\x01\x30\x04")
    assert frame.code == 0x40 and frame.params == b"\x01\x30\x04"


def test_long_payload_uses_the_extended_frame_and_round_trips() -> None:
    data = bytes([0x00]) + bytes(range(256)) + bytes(5)
    raw = build_frame(0xD4, data)
    assert raw[:5] == b"\x00\x00\xff\xff\xff"
    assert parse_frame(raw).data == data


def test_bad_length_checksum_is_a_typed_protocol_error() -> None:
    raw = bytearray(build_command(0x02))
    raw[4] ^= 1
    with pytest.raises(LengthChecksumError) as info:
        parse_frame(bytes(raw))
    assert isinstance(info.value, ProtocolError)


def test_bad_data_checksum_is_a_typed_protocol_error() -> None:
    raw = bytearray(build_command(0x02))
    raw[-2] ^= 1
    with pytest.raises(DataChecksumError):
        parse_frame(bytes(raw))


def test_missing_postamble_and_unknown_tfi_are_frame_errors() -> None:
    raw = bytearray(build_command(0x02))
    raw[-1] = 0x01
    with pytest.raises(FrameError):
        parse_frame(bytes(raw))
    with pytest.raises(FrameError):
        parse_frame(build_frame(0x33, b"\x02"))


def test_reader_yields_frames_split_across_many_feeds() -> None:
    stream = frames.ACK + build_response(0x02, b"\x32\x01\x06\x07")
    reader = FrameReader()
    got: list[Frame] = []
    for byte in stream:
        reader.feed(bytes([byte]))
        frame = reader.pop()
        if frame is not None:
            got.append(frame)
    assert got == [ACK_FRAME, Frame(FrameKind.INFO, 0xD5, b"\x03\x32\x01\x06\x07")]


def test_reader_skips_garbage_and_reports_a_corrupt_frame_then_finds_the_next() -> None:
    bad = bytearray(build_response(0x4A, b"\x00"))
    bad[-2] ^= 0xFF
    good = build_response(0x4A, b"\x01\x01\x00\x04\x08\x04\xa1\xb2\xc3\xd4")
    reader = FrameReader()
    reader.feed(b"\x55\x13\xff\x00" + bytes(bad) + b"\xde\xad" + good)
    out = reader.pop_all()
    assert isinstance(out[0], DataChecksumError)
    assert out[-1] == parse_frame(good)


def test_false_header_in_garbage_releases_the_real_frames_when_the_line_goes_quiet() -> None:
    # garbage claims a 0x40-byte frame; the real ACK + response arrive before that many bytes
    good = frames.ACK + build_response(0x40, b"\x00")
    reader = FrameReader()
    reader.feed(b"\x00\x00\xff\x40\xc0\xd5" + good)
    assert reader.pop_all() == []  # the bytes might still be the held frame's payload
    assert reader.expire()
    kinds = [f.kind for f in reader.pop_all() if isinstance(f, Frame)]
    assert kinds == [FrameKind.ACK, FrameKind.INFO]


def test_a_frame_whose_payload_contains_an_ack_arrives_whole_across_feeds() -> None:
    # card data may hold any bytes, here an ACK; it must not be cut out of the response
    response = build_response(0x40, b"\x00" + b"\x00\x00\xff\x00\xff\x00" + bytes(10))
    reader = FrameReader()
    reader.feed(response[:14])
    assert reader.pop_all() == []
    reader.feed(response[14:])
    assert reader.pop_all() == [parse_frame(response)]


def test_false_nack_made_of_garbage_and_a_preamble_does_not_eat_the_frame() -> None:
    good = build_response(0x02, b"\x32\x01\x06\x07")
    reader = FrameReader()
    reader.feed(b"\x00\xff\xff" + good)
    assert parse_frame(good) in reader.pop_all()


# --- fuzz ----------------------------------------------------------------------------------------

valid_frames = st.one_of(
    st.just(frames.ACK),
    st.just(frames.NACK),
    st.just(frames.ERROR_FRAME),
    st.builds(build_frame, st.sampled_from([0xD4, 0xD5]), st.binary(min_size=1, max_size=300)),
)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _drain(reader: FrameReader, chunks: list[bytes]) -> list[Frame | FrameError]:
    out: list[Frame | FrameError] = []
    for chunk in chunks:
        reader.feed(chunk)
        out.extend(reader.pop_all())  # anything but a FrameError propagates and fails the test
    while reader.expire():  # then the line goes quiet
        out.extend(reader.pop_all())
    return out


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None)
@given(noise=st.binary(max_size=200), cuts=st.lists(st.integers(0, 400), max_size=8))
def test_random_bytes_only_ever_raise_typed_frame_errors(noise: bytes, cuts: list[int]) -> None:
    out = _drain(FrameReader(), _chunks(noise, cuts))
    assert all(isinstance(item, (Frame, FrameError)) for item in out)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None)
@given(garbage=st.binary(max_size=64), frame=valid_frames,
       cuts=st.lists(st.integers(0, 800), max_size=6))
def test_valid_frame_after_garbage_is_never_lost(garbage: bytes, frame: bytes, cuts: list[int]) -> None:
    expected = parse_frame(frame)
    out = _drain(FrameReader(), _chunks(garbage + frame, cuts))
    assert expected in out


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None)
@given(frame=valid_frames, flips=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 255)),
                                           min_size=1, max_size=3),
       follow=valid_frames)
def test_corrupted_frame_is_rejected_or_typed_and_the_next_frame_survives(
        frame: bytes, flips: list[tuple[int, int]], follow: bytes) -> None:
    corrupted = bytearray(frame)
    for pos, mask in flips:
        corrupted[pos % len(corrupted)] ^= mask
    out = _drain(FrameReader(), [bytes(corrupted), follow])
    assert parse_frame(follow) in out
