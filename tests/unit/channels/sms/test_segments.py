from __future__ import annotations

import pytest

from campaign_orchestrator.channels.sms.segments import GSM7_BASIC, GSM7_EXTENSION, is_gsm7, non_gsm7, segments

EXTENSION = "€[]{}^~\\|"
EMOJI = "😀"  # U+1F600: a surrogate pair in UTF-16


def test_alphabet_tables() -> None:
    assert len(GSM7_BASIC) == 127  # 128 codes, one of which is the escape
    assert "\x1b" not in GSM7_BASIC
    assert set(EXTENSION) | {"\f"} == GSM7_EXTENSION
    assert not GSM7_BASIC & GSM7_EXTENSION
    assert is_gsm7("Hello @ £5, ÄÖÜ äöü ñ à è é ù ì ò Ç Ø å Δ Ω ¿¡ §\n\r")


def test_empty_text_is_no_segment() -> None:
    assert segments("") == ("GSM-7", 0)


@pytest.mark.parametrize(
    ("length", "expected"),
    [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4), (1530, 10)],
)
def test_gsm7_boundaries(length: int, expected: int) -> None:
    assert segments("a" * length) == ("GSM-7", expected)


@pytest.mark.parametrize("char", list(EXTENSION))
def test_extension_characters_cost_two_septets(char: str) -> None:
    assert segments(char * 80) == ("GSM-7", 1)  # 160 septets
    assert segments(char * 80 + "a") == ("GSM-7", 2)  # 161
    assert segments("a" * 158 + char) == ("GSM-7", 1)
    assert segments("a" * 159 + char) == ("GSM-7", 2)


def test_escape_pair_is_never_split_across_parts() -> None:
    # 152 septets, then '€' would need septets 153 and 154: it moves to part 2 whole.
    assert segments("a" * 152 + "€" + "a" * 152) == ("GSM-7", 3)
    # 151 + 2 = 153 exactly fills part 1.
    assert segments("a" * 151 + "€" + "a" * 153) == ("GSM-7", 2)
    # A part holds 76 escape pairs (152 septets), not 76.5.
    assert segments("€" * 152) == ("GSM-7", 2)
    assert segments("€" * 153) == ("GSM-7", 3)


@pytest.mark.parametrize(
    ("length", "expected"),
    [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)],
)
def test_ucs2_boundaries(length: int, expected: int) -> None:
    text = "я" * length  # Cyrillic: outside GSM-7, inside the BMP
    assert segments(text) == ("UCS-2", expected)


def test_one_non_gsm_character_switches_the_whole_text() -> None:
    assert segments("a" * 150) == ("GSM-7", 1)
    assert segments("a" * 149 + "’") == ("UCS-2", 3)  # 150 UCS-2 units: 67 + 67 + 16
    assert segments("ç") == ("UCS-2", 1)  # only the capital Ç is in the GSM alphabet
    assert segments("\x1b") == ("UCS-2", 1)  # a bare escape is not a character
    assert non_gsm7("l’été, ça ’va’") == ["’", "ç"]


def test_extension_characters_cost_one_unit_in_ucs2() -> None:
    assert segments("я" + "€" * 69) == ("UCS-2", 1)
    assert segments("я" + "€" * 70) == ("UCS-2", 2)


def test_emoji_are_two_utf16_units() -> None:
    assert segments(EMOJI * 35) == ("UCS-2", 1)  # 70 units
    assert segments(EMOJI * 35 + "a") == ("UCS-2", 2)  # 71 units
    assert segments("a" * 69 + EMOJI) == ("UCS-2", 2)


def test_surrogate_pair_is_never_split_across_parts() -> None:
    # 66 units, then an emoji would need units 67 and 68: it moves to part 2 whole.
    assert segments("a" * 66 + EMOJI + "a" * 66) == ("UCS-2", 3)
    assert segments("a" * 65 + EMOJI + "a" * 67) == ("UCS-2", 2)  # 67 + 67 exactly
    assert segments(EMOJI * 67) == ("UCS-2", 3)  # 33 per part (66 units)
