"""The kiosk's receipt key on disk: <data_dir>/keys/receipt-ed25519.pem (Ed25519, PKCS#8, mode
0600 from the moment it exists, in a 0700 dir) and its public half receipt-ed25519.pub (raw 32
bytes, base64) that verifiers are given."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import ClassVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kiosk.errors import KioskError
from kiosk.receipts.codec import ReceiptSigner, load_public_key

log = logging.getLogger("kiosk.receipts")

KEY_DIR = "keys"
KEY_FILE = "receipt-ed25519.pem"
PUB_FILE = "receipt-ed25519.pub"


class ReceiptKeyError(KioskError):
    """The kiosk's receipt key is missing or cannot be read; receipts cannot be signed."""

    key: ClassVar[str] = "receipt.key_unreadable"
    fa: ClassVar[str] = ("کلید امضای رسید این کیوسک خوانا نیست. رسید صادر نمی‌شود؛ "
                         "تکنسین باید کلید را بازیابی یا کیوسک را دوباره ثبت کند.")
    en: ClassVar[str] = ("This kiosk's receipt signing key cannot be read, so receipts cannot be issued. "
                         "A technician must restore the key or re-enroll the kiosk.")
    money: ClassVar[str] = "none"


def _keys_dir(data_dir: str | os.PathLike[str]) -> Path:
    """<data_dir>/keys, mode 0700: created so (mkdir's mode only ever loses bits to the
    umask), and tightened when an older install made it looser."""
    keys = Path(data_dir) / KEY_DIR
    keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    if keys.stat().st_mode & 0o077:
        os.chmod(keys, 0o700)
    return keys


def _write_private(path: Path, data: bytes) -> bool:
    """Create `path` with mode 0600 holding data, atomically and only if it does not exist
    (two processes starting at once must not end up with two keys). True if we created it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process won the race: then its key is the key
        created = True
    except FileExistsError:
        created = False
    finally:
        tmp.unlink()
    _fsync_dir(path.parent)
    return created


def _write_replace(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_signer(pem_path: Path) -> ReceiptSigner:
    mode = pem_path.stat().st_mode & 0o777
    if mode & 0o077:
        # Someone copied it in with a loose umask; a key others can read signs forged receipts.
        log.warning("receipt key was readable by others (mode %o); set to 0600", mode,
                    extra={"event": "receipt_key_mode_fixed"})
        os.chmod(pem_path, 0o600)
    try:
        key = serialization.load_pem_private_key(pem_path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise ReceiptKeyError(f"cannot read {pem_path}: {type(exc).__name__}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ReceiptKeyError(f"{pem_path} is not an Ed25519 key")
    return ReceiptSigner(key, pem_path)


def load_or_create_key(data_dir: str | os.PathLike[str]) -> ReceiptSigner:
    """The kiosk's receipt signer from <data_dir>/keys/receipt-ed25519.pem, creating the key
    (mode 0600 from creation, in a 0700 dir) and its public half on first use."""
    keys = _keys_dir(data_dir)
    pem_path = keys / KEY_FILE
    if not pem_path.exists():
        new_key = Ed25519PrivateKey.generate()
        pem = new_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        if _write_private(pem_path, pem):
            log.info("created receipt signing key", extra={"event": "receipt_key_created"})
    signer = _load_signer(pem_path)
    pub_path = keys / PUB_FILE
    pub_text = signer.public_key_b64 + "\n"
    if not pub_path.exists() or pub_path.read_text(encoding="ascii", errors="replace") != pub_text:
        _write_replace(pub_path, pub_text.encode("ascii"), 0o644)
    return signer


def load_key(data_dir: str | os.PathLike[str]) -> ReceiptSigner:
    """The existing receipt signer (a reprint must never mint a new key): ReceiptKeyError
    when the data dir has none or it cannot be read."""
    pem_path = Path(data_dir) / KEY_DIR / KEY_FILE
    if not pem_path.exists():
        raise ReceiptKeyError(f"no receipt key at {pem_path}")
    return _load_signer(pem_path)


def read_public_key_file(data_dir: str | os.PathLike[str]) -> Ed25519PublicKey:
    """The public key beside the kiosk's signing key (FileNotFoundError if there is none yet)."""
    return load_public_key((Path(data_dir) / KEY_DIR / PUB_FILE).read_text(encoding="ascii"))


__all__ = ["KEY_FILE", "PUB_FILE", "ReceiptKeyError", "load_key", "load_or_create_key", "read_public_key_file"]
