"""Evidence counts: how many events of each author counted for nothing, and why.

Counts, never the events themselves, so what a liar writes costs memory only per (author,
reason): the reasons are a fixed set of sentences (`authority`), the authors announced members.
The projection keeps one `Findings` per held job (replaced whenever the job is folded again)
and one `Totals` for the jobs it let go of; these helpers add and take back between them.
"""

from __future__ import annotations

from collections.abc import Iterable

Findings = dict[tuple[bytes, str], int]  # (author, why) -> how many of its events
Totals = dict[bytes, dict[str, int]]  # author -> why -> how many
Counted = tuple[tuple[bytes, str, int], ...]  # (author, why, how many): kept in a summary


def found(findings: Findings, author: bytes, why: str) -> None:
    findings[(author, why)] = findings.get((author, why), 0) + 1


def counted(findings: Findings) -> Counted:
    return tuple(sorted((author, why, n) for (author, why), n in findings.items()))


def add(totals: Totals, counts: Iterable[tuple[bytes, str, int]], sign: int = 1) -> None:
    """Add `counts` to `totals` (sign -1: take them back), dropping what comes to nothing."""
    for author, why, n in counts:
        by_reason = totals.setdefault(author, {})
        left = by_reason.get(why, 0) + sign * n
        if left:
            by_reason[why] = left
        else:
            by_reason.pop(why, None)
            if not by_reason:
                del totals[author]


def merged(totals: Totals, held: Iterable[Findings]) -> Totals:
    """Per author and reason, `totals` and every held job's findings together (a copy)."""
    out: Totals = {author: dict(reasons) for author, reasons in totals.items()}
    for findings in held:
        add(out, ((author, why, n) for (author, why), n in findings.items()))
    return out
