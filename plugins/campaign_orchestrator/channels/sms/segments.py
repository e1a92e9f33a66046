"""How many SMS segments a text costs, counted the way carriers split it.

A text made only of the GSM 03.38 default alphabet travels as 7-bit septets: 160 in a single
SMS; a longer text is split into parts of 153 (the user-data header of a concatenated SMS
takes the other 7). Characters of the extension table (``€ [ ] { } ^ ~ \\ |`` and form feed)
are an escape plus a septet, 2 septets each, and an escape pair is never split across two
parts. Any other character switches the whole message to UCS-2: 70 UTF-16 code units single,
67 per part, where a character outside the Basic Multilingual Plane (most emoji) is a
surrogate pair of 2 units that is never split either.

So one ``’`` (a typographic apostrophe) in a 150-character message turns 1 segment into 3:
which is why a renderer reports the encoding with the count.
"""

from __future__ import annotations

from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
"""The 127 characters of the default alphabet (its 128th code, 0x1B, is the escape)."""

GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
"""Characters sent as escape + septet: 2 septets each."""

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def non_gsm7(text: str) -> list[str]:
    """The distinct characters that force ``text`` into UCS-2, in order of appearance."""
    return list(dict.fromkeys(ch for ch in text if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION))


def _pack(costs: list[int], single: int, part: int) -> int:
    if sum(costs) <= single:
        return 1
    count, used = 1, 0
    for cost in costs:
        if used + cost > part:  # an escape pair or surrogate pair starts the next part
            count += 1
            used = 0
        used += cost
    return count


def segments(text: str) -> tuple[Encoding, int]:
    """``(encoding, segment count)`` of ``text``; an empty text is ``("GSM-7", 0)``."""
    if not text:
        return "GSM-7", 0
    if is_gsm7(text):
        return "GSM-7", _pack([2 if ch in GSM7_EXTENSION else 1 for ch in text], GSM7_SINGLE, GSM7_PART)
    return "UCS-2", _pack([2 if ord(ch) > 0xFFFF else 1 for ch in text], UCS2_SINGLE, UCS2_PART)
