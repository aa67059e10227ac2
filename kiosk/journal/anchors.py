"""Check the local journal against the anchors the back-office kept: the (seq, head hash)
each settlement carried. Pure: rows and anchors in, findings out, so the CLI, tests and a
fleet server share one rule.

A local verify cannot see a tail cut off, nor a chain rewritten with every hash recomputed;
an anchor can, because the back-office got it before the tampering happened.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class AnchorLike(Protocol):
    """What the back-office returns per settlement (kiosk.backoffice_client.JournalAnchor)."""

    @property
    def transaction_id(self) -> str: ...

    @property
    def journal_seq(self) -> int: ...

    @property
    def journal_head(self) -> str: ...


class RowLike(Protocol):
    @property
    def seq(self) -> int: ...

    @property
    def tx_id(self) -> str: ...

    @property
    def hash(self) -> str: ...


class AnchorVerdict(enum.StrEnum):
    OK = "ok"
    #: the anchor names a seq past the local tail: rows were cut from the end
    CUT = "cut"
    #: the local row at the anchor's seq has another hash, and the anchored transaction is
    #: still in the journal: its history was edited and the hashes recomputed
    REWRITTEN = "rewritten"
    #: the local row at the anchor's seq has another hash and the anchored transaction is gone:
    #: another history stands in its place (restored from an old copy, then appended to)
    FORK = "fork"


@dataclass(frozen=True)
class AnchorFinding:
    verdict: AnchorVerdict
    seq: int
    transaction_id: str
    detail: str


@dataclass(frozen=True)
class AnchorReport:
    ok: bool
    checked: int
    local_head_seq: int
    findings: list[AnchorFinding] = field(default_factory=list)

    @property
    def problems(self) -> list[AnchorFinding]:
        return [f for f in self.findings if f.verdict is not AnchorVerdict.OK]


def _basket_parent(tx: str) -> str:
    """A fee basket settles each bill as "<tx>.<i>": the journal holds the basket's "<tx>"."""
    parent, dot, index = tx.rpartition(".")
    return parent if dot and index.isdigit() else ""


def compare_anchors(rows: Iterable[RowLike], anchors: Sequence[AnchorLike]) -> AnchorReport:
    """Each anchor against the local rows (every row of the journal, any order)."""
    by_seq: dict[int, str] = {}
    tx_ids: set[str] = set()
    for row in rows:
        by_seq[row.seq] = row.hash
        tx_ids.add(row.tx_id)
    tail = max(by_seq, default=0)
    findings: list[AnchorFinding] = []
    for anchor in sorted(anchors, key=lambda a: a.journal_seq):
        seq, head, tx = anchor.journal_seq, anchor.journal_head, anchor.transaction_id
        local = by_seq.get(seq)
        if seq > tail:
            findings.append(AnchorFinding(
                AnchorVerdict.CUT, seq, tx,
                f"the back-office holds row {seq} (settlement of {tx}) but the journal ends "
                f"at row {tail}: rows were cut from the end"))
        elif local == head:
            findings.append(AnchorFinding(AnchorVerdict.OK, seq, tx, f"row {seq} matches"))
        elif tx in tx_ids or _basket_parent(tx) in tx_ids:
            findings.append(AnchorFinding(
                AnchorVerdict.REWRITTEN, seq, tx,
                f"row {seq} has hash {str(local)[:12]}…, the back-office holds {head[:12]}… "
                f"(settlement of {tx}): the chain was rewritten"))
        else:
            findings.append(AnchorFinding(
                AnchorVerdict.FORK, seq, tx,
                f"row {seq} has hash {str(local)[:12]}… and {tx} is not in the journal; the "
                f"back-office holds {head[:12]}…: another history replaced this one"))
    ok = all(f.verdict is AnchorVerdict.OK for f in findings)
    return AnchorReport(ok=ok, checked=len(findings), local_head_seq=tail, findings=findings)
