"""Time-ordered event ids (UUIDv7, RFC 9562) cheap enough for the capture hot path.

Layout: 48-bit millisecond timestamp, version 7, then bits that are random per process (re-drawn after
``fork``) and a 32-bit process-wide counter last, so ids from one process never collide and sort in
capture order. Formatting is amortised: the string up to the counter's last byte is cached and rebuilt
only when the millisecond or the counter's upper 24 bits change, so a call is one table lookup and one
concatenation.
"""

from __future__ import annotations

import itertools
import os
import random
import time

_HEX2 = tuple(f"{i:02x}" for i in range(256))
# One slot holding (millisecond, counter >> 8, prefix): read and replaced as a whole, so threads never mix
# one id's prefix with another's counter.
_cache: list[tuple[int, int, str]] = [(-1, -1, "")]
_counter = itertools.count()
_node = ""


def _reseed() -> None:
    global _node, _counter
    r = random.SystemRandom()
    # "-7" + 12 random bits (rand_a), "-" variant 0b10 + 14 random bits, "-" 16 random bits, counter follows.
    _node = f"-7{r.getrandbits(12):03x}-{0x8000 | r.getrandbits(14):04x}-{r.getrandbits(16):04x}"
    _counter = itertools.count(r.getrandbits(30))
    _cache[0] = (-1, -1, "")


_reseed()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def uuid7(ns: int | None = None) -> str:
    """A UUIDv7 string for the instant ``ns`` (nanoseconds since the epoch; now when omitted)."""
    ms = (time.time_ns() if ns is None else ns) // 1_000_000
    c = next(_counter)
    hi = c >> 8
    cms, chi, pfx = _cache[0]
    if cms != ms or chi != hi:
        h = f"{ms & 0xFFFFFFFFFFFF:012x}"
        pfx = f"{h[:8]}-{h[8:]}{_node}{hi & 0xFFFFFF:06x}"
        _cache[0] = (ms, hi, pfx)
    return pfx + _HEX2[c & 0xFF]
