"""Resource quantities as users write them (`500m`, `2`, `64Mi`, `1G`) and as the log keeps them.

Specs keep the normalised integers (cpu millis, bytes) so that ranking and fitting are integer
arithmetic and a spec's canonical form has one spelling per amount.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

_SIZE_UNITS = {
    "": 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKMGTP]i?)?B?\s*$")
_CPU_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m?)\s*$")
# Docker refuses a memory limit under 6 MiB, and a wasm module needs a 64 KiB page per step:
# a claim below this can only fail every attempt, so the spec refuses it (0 = no claim).
MIN_MEMORY_BYTES = 6 << 20


def parse_size(value: Any) -> int | None:
    """Bytes in `value` (an int, or text like `512Mi`, `1G`, `1.5Gi`), None if not a size."""
    if type(value) is int:
        return value if value >= 0 else None
    if not isinstance(value, str):
        return None
    match = _SIZE_RE.match(value)
    if match is None:
        return None
    number, unit = match.group(1), match.group(2) or ""
    if unit not in _SIZE_UNITS:
        return None
    return int(Decimal(number) * _SIZE_UNITS[unit])


def memory_too_small(written: Any, memory: int | None) -> str | None:
    """Why a memory claim can never run (`64` is 64 bytes, not MiB), or None if it can."""
    if memory is None or not 0 < memory < MIN_MEMORY_BYTES:
        return None
    return (
        f"{written!r} is {memory} bytes, less than the 6Mi a job needs at least "
        "(a number without a unit is bytes: write 64Mi for 64 MiB)"
    )


def parse_cpu(value: Any) -> int | None:
    """Millicores in `value` (`500m`, `2`, `0.5`, 2, 0.5), None if not a CPU amount."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if value < 0:
            return None
        try:
            return int(Decimal(str(value)) * 1000)
        except InvalidOperation:
            return None
    if not isinstance(value, str):
        return None
    match = _CPU_RE.match(value)
    if match is None:
        return None
    number = Decimal(match.group(1))
    return int(number) if match.group(2) == "m" else int(number * 1000)


def format_size(n: int) -> str:
    """Short human rendering for messages: `512Mi`, `1.5Gi`, `1000`."""
    for unit in ("Pi", "Ti", "Gi", "Mi", "Ki"):
        scale = _SIZE_UNITS[unit]
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)
