"""An independent PN532 host library (nfcpy) initialises the virtual PN532 and reads a virtual
card's UID: proof that the virtual device speaks the real wire, not just our own driver's dialect.

nfcpy's `ContactlessFrontend("tty:NAME:pn532")` only looks for NAME among /dev entries, so a
pty under /dev/pts cannot be named that way; we run the same code it would, its pn532 driver's
`init(transport.TTY(path))`, which does the wake-up, GetFirmwareVersion, SAMConfiguration,
baud-rate switch, Diagnose line test (an extended frame), SetParameters and RFConfiguration.
"""

from __future__ import annotations

from collections.abc import Iterator

import nfc.clf
import nfc.clf.pn532
import nfc.clf.transport
import pytest

from devices.pn532.virtual import VirtualCard, VirtualPN532

UID = bytes.fromhex("a1b2c3d4")


@pytest.fixture
def virtual() -> Iterator[VirtualPN532]:
    v = VirtualPN532(baud=115200)
    v.start()
    yield v
    v.stop()


def test_nfcpy_initialises_the_virtual_pn532_and_reads_the_card_uid(virtual: VirtualPN532) -> None:
    virtual.place(VirtualCard.blank(UID))
    device = nfc.clf.pn532.init(nfc.clf.transport.TTY(virtual.port))
    try:
        assert device._chipset_name == "PN532v1.6"
        clf = nfc.clf.ContactlessFrontend()
        clf.device = device  # what ContactlessFrontend.open() does after finding the port
        target = clf.sense(nfc.clf.RemoteTarget("106A"))
        assert target is not None
        assert bytes(target.sdd_res) == UID
        assert bytes(target.sel_res) == b"\x08"  # MIFARE Classic 1K
        assert bytes(target.sens_res) == b"\x04\x00"
    finally:
        device.close()
    # nfcpy's init ran the commands a real PN532 must answer, the Diagnose line test included
    assert {0x02, 0x14, 0x00, 0x12, 0x32, 0x4A}.issubset(set(virtual.commands))


def test_nfcpy_senses_nothing_when_no_card_is_on_the_field(virtual: VirtualPN532) -> None:
    device = nfc.clf.pn532.init(nfc.clf.transport.TTY(virtual.port))
    try:
        assert device.sense_tta(nfc.clf.RemoteTarget("106A")) is None
    finally:
        device.close()
    assert 0x06 in virtual.commands  # it read CIU_FIFOData to tell "no card" from "type 1 tag"
