"""Build a multipart/alternative (text + HTML, UTF-8) message as wire-ready bytes, fast.

The stdlib's ``EmailMessage`` and generator are correct but cost 0.3-2 ms per message (more
with non-ASCII headers; ``bench/bench_mime.py`` measures it), many times the cost of
rendering it. A campaign's messages differ only in a few
headers and two bodies, so :class:`MimeBuilder` computes the constant part once per step
(From, Reply-To, MIME headers, boundary) and per message only formats To, Subject, Date and
Message-ID and quoted-printable-encodes the bodies with :func:`binascii.b2a_qp` (C), line by
line: the lines of the template, the same in every message, are encoded once (:class:`QpLines`).

What the output guarantees (``tests/unit/channels/email/test_mime.py`` checks it against
the stdlib parser):

- CRLF line endings everywhere, every line at most 78 characters in headers where a fold
  is possible and at most 76 in bodies, never above 998; all bytes are 7-bit ASCII.
- Non-ASCII subjects and display names are RFC 2047 encoded-words (base64, UTF-8), split on
  character boundaries; whitespace runs in them are collapsed, so a CR or LF can never start
  a new header. Addresses, Message-ID and extra headers containing CR/LF raise ValueError.
- The boundary contains ``=_``, a sequence quoted-printable output cannot contain, so no
  body can end a part early whatever it says.
- A body line starting with ``From `` is sent as ``=46rom `` so mbox-style stores do not
  rewrite it to ``>From``; lines starting with ``.`` are left to SMTP dot-stuffing.
"""

from __future__ import annotations

import binascii
import re
import secrets
import time
from datetime import datetime, timezone
from email.utils import format_datetime, parseaddr
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

MAX_HEADER_LINE = 78
_ENCODED_CHUNK = 42
"""Bytes per encoded-word: 56 base64 characters, a 68-character word, which fits after
``Subject: `` on the first line and after the leading space of a continuation line."""
_LONGEST_WORD = 69
"""A longer word cannot fit on a 78-character line after ``Subject: ``: it is encoded,
which splits it."""

_QP_CACHE_CHARS = 1_000_000
"""Characters of body lines and their encodings a builder keeps, per body part."""
_QP_CACHED_LINE = 2000
"""Longer lines are encoded every time and not kept."""

_HEADER_WS = re.compile(r"[ \x00-\x1f\x7f\x85\u2028\u2029]+")
_NEEDS_CLEANING = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]|  |^ | $")
_FOLD_POINT = re.compile(r"(?<=\S) (?=\S)")
_ADDR = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+")
_MESSAGE_ID = re.compile(r"<[!-;=?A-~]+@[!-;=?A-~]+>")  # visible ASCII but <, >, @
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 ftext
_RESERVED = frozenset(
    {"from", "reply-to", "to", "subject", "date", "message-id", "mime-version", "content-type",
     "content-transfer-encoding"}
)


def envelope_address(address: str) -> str:
    """``address`` as the ASCII addr-spec SMTP and SES take (IDN domain as punycode).

    Raises ValueError for anything that is not one bare address, including CR/LF and a
    non-ASCII local part (which would need SMTPUTF8).
    """
    address = address.strip(" \t")
    if not address.isascii():
        local, at, domain = address.rpartition("@")
        if not at or not local.isascii():
            raise ValueError(f"{address!r} has a non-ASCII local part, which needs SMTPUTF8")
        try:
            address = f"{local}@{domain.encode('idna').decode('ascii')}"
        except UnicodeError as exc:
            raise ValueError(f"{address!r} has an invalid domain: {exc}") from None
    if not _ADDR.fullmatch(address):
        raise ValueError(f"{address!r} is not a single email address")
    return address


def _clean(text: str) -> str:
    """Header text on one line: every run of whitespace or control characters is one space."""
    return _HEADER_WS.sub(" ", text).strip()


def encoded_words(text: str) -> list[str]:
    """RFC 2047 base64 encoded-words for ``text``, never splitting a character."""
    raw = text.encode("utf-8")
    words = []
    start, size = 0, len(raw)
    while start < size:
        end = min(start + _ENCODED_CHUNK, size)
        while end < size and raw[end] & 0xC0 == 0x80:  # a UTF-8 continuation byte
            end -= 1
        words.append("=?utf-8?b?" + binascii.b2a_base64(raw[start:end], newline=False).decode("ascii") + "?=")
        start = end
    return words


def fold(name: str, tokens: list[str]) -> str:
    """``Name: tok tok`` folded before a token wherever a line would pass 78 characters."""
    line = name + ":"
    lines = []
    for index, token in enumerate(tokens):
        # Never before the first token: parsers keep the whitespace a fold there leaves.
        if index and len(line) + 1 + len(token) > MAX_HEADER_LINE:
            lines.append(line)
            line = " " + token
        else:
            line += " " + token
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def _text_tokens(text: str) -> list[str]:
    # Already cleaned: single spaces only. Plain words unless encoding is needed: non-ASCII,
    # something a reader would decode as an encoded-word, or a word too long to fold.
    if text.isascii() and "=?" not in text:
        words = text.split(" ")
        if max(map(len, words)) <= _LONGEST_WORD:
            return words
    return encoded_words(text)


def address_tokens(name: str | None, address: str) -> list[str]:
    """``Name <addr>`` as foldable tokens, quoting or encoding the name like ``formataddr``."""
    address = envelope_address(address)
    name = _clean(name) if name else ""
    if not name:
        return [address]
    if not name.isascii() or "=?" in name:
        tokens = encoded_words(name)
    elif _ATOMS.fullmatch(name):
        tokens = name.split(" ")
    else:
        tokens = ['"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"']
    if max(map(len, tokens)) > _LONGEST_WORD:
        tokens = encoded_words(name)
    return [*tokens, f"<{address}>"]


def subject_header(subject: str) -> str:
    """The folded ``Subject:`` line(s) for ``subject``."""
    if subject.isascii() and len(subject) <= _LONGEST_WORD and "=?" not in subject and not _NEEDS_CLEANING.search(subject):
        return f"Subject: {subject}\r\n"
    return fold("Subject", _text_tokens(_clean(subject)))


def _qp(text: str) -> bytes:
    """Quoted-printable body with CRLF line ends and lines of at most 76 characters."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    # With only LF in its input, b2a_qp writes LF for hard and soft breaks alike.
    out = binascii.b2a_qp(text.encode("utf-8"), istext=True)
    escape_from = out.startswith(b"From ") or b"\nFrom " in out
    if escape_from:
        out = (b"=46" + out[1:] if out.startswith(b"From ") else out).replace(b"\nFrom ", b"\n=46rom ")
    # b2a_qp escapes a line's trailing space or tab after checking the line's length, and
    # "=46" adds two characters: only then can a line reach 77 or 78, and it is refolded.
    if escape_from or b"=20\n" in out or b"=09\n" in out or out.endswith((b"=20", b"=09")):
        lines = out.split(b"\n")
        if max(map(len, lines)) > 76:
            lines = [_fold_line(line) if len(line) > 76 else line for line in lines]
        return b"\r\n".join(lines)
    return out.replace(b"\n", b"\r\n")


class QpLines(dict[str, bytes | None]):
    """Quoted-printable encodings of the lines of one template's bodies.

    Quoted-printable encodes each line on its own, and most lines of a rendered body are
    the template's, the same for every recipient: :meth:`encode` looks each line up and
    encodes only those it has not seen (the ones a recipient changes, mostly), all in one
    :func:`_qp` call. Lines are kept until they fill :data:`_QP_CACHE_CHARS`; after that
    the template's lines, met first, are still there, and new lines are encoded each time.
    Like its builder, used by one thread at a time.
    """

    __slots__ = ("_budget", "_last", "_new")

    def __init__(self) -> None:
        super().__init__()
        self._budget = _QP_CACHE_CHARS
        self._new: list[str] = []
        # The previous body's last line, kept apart: it has no LF after it, and b2a_qp folds
        # a line ending in a space or tab differently at the end of its input.
        self._last: tuple[str, bytes] = ("", b"")

    def __missing__(self, line: str) -> None:
        self._new.append(line)

    def encode(self, text: str) -> bytes:
        """:func:`_qp` of ``text``, byte for byte."""
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        *lines, last = text.split("\n")
        # map() over the dict's own __getitem__: known lines cost no Python call.
        encoded = [*map(self.__getitem__, lines)]
        new = self._new
        if new:
            self._new = []  # before _qp, which raises for a lone surrogate
            if 2 * len(new) > len(lines) and len(self) >= len(lines):
                # Mostly new lines, though as many are known: personalised throughout,
                # where keeping lines costs more than encoding the body whole.
                return _qp(text)
        if new or last != self._last[0]:
            # The new lines and the last one in one _qp call, cut at its hard breaks: CRLF
            # not after "=" (a soft break is "=" CRLF, and an encoded line never ends with
            # "=", which is itself encoded). NUL, always encoded, stands in for the soft
            # breaks' CRLF meanwhile.
            batch = _qp("\n".join([*new, last])).replace(b"=\r\n", b"=\0")
            *fresh, end = [piece.replace(b"=\0", b"=\r\n") for piece in batch.split(b"\r\n")]
            self._last = (last, end)
            if new:
                known = dict(zip(new, fresh))
                encoded = [known[line] if qp is None else qp for line, qp in zip(lines, encoded)]
                for line, piece in known.items():
                    if len(line) <= _QP_CACHED_LINE and self._budget > 0:
                        self._budget -= len(line) + len(piece)
                        self[line] = piece
        encoded.append(self._last[1])
        return b"\r\n".join(encoded)  # type: ignore[arg-type]  # no None is left


def _fold_line(line: bytes) -> bytes:
    parts = []
    while len(line) > 76:
        # A soft break at 75 (+ "="), never inside an =XX escape.
        cut = 75
        if line[cut - 1] == 0x3D:
            cut -= 1
        elif line[cut - 2] == 0x3D:
            cut -= 2
        parts.append(line[:cut] + b"=")
        line = line[cut:]
    parts.append(line)
    return b"\r\n".join(parts)


def _custom_header(name: str, value: str) -> str:
    if not _HEADER_NAME.fullmatch(name) or name.lower() in _RESERVED:
        raise ValueError(f"{name!r} cannot be set as an extra header")
    if "\r" in value or "\n" in value or not value.isascii():
        raise ValueError(f"header {name} must be one line of ASCII: {value[:80]!r}")
    value = value.strip(" \t")
    if len(name) + len(value) <= 76:
        return f"{name}: {value}\r\n"
    # No space, no fold point (one long URL): the regex would scan it to return it whole.
    return fold(name, _FOLD_POINT.split(value) if " " in value else [value])


class MimeBuilder:
    """Builds the messages of one step: everything constant is formatted once.

    :param sender: the From header, ``'Name <addr>'`` or a bare address.
    :param reply_to: optional Reply-To, same forms.
    :param static_headers: extra headers identical for every message of the step.
    :param clock: seconds since the epoch; the Date header is formatted at most once a second.
    """

    def __init__(
        self,
        sender: str,
        reply_to: str | None = None,
        *,
        static_headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        name, address = parseaddr(sender)
        if not address:
            raise ValueError(f"{sender!r} is not an email address")
        self.envelope_from = envelope_address(address)
        self.domain = self.envelope_from.rpartition("@")[2].lower()
        top = fold("From", address_tokens(name, address))
        if reply_to:
            reply_name, reply_address = parseaddr(reply_to)
            top += fold("Reply-To", address_tokens(reply_name, reply_address))
        self._top = top
        self.boundary = f"=_co_{secrets.token_hex(12)}"
        tail = "".join(_custom_header(k, v) for k, v in (static_headers or {}).items())
        part = 'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
        self._tail = (
            f"{tail}MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/alternative;\r\n boundary="{self.boundary}"\r\n'
            f"\r\n--{self.boundary}\r\n{part.format('plain')}"
        )
        self._between = f"\r\n--{self.boundary}\r\n{part.format('html')}".encode("ascii")
        self._end = f"\r\n--{self.boundary}--\r\n".encode("ascii")
        self._clock = clock
        self._date_second = -1
        self._date = ""
        self._text_lines = QpLines()
        self._html_lines = QpLines()

    def _date_header(self) -> str:
        second = int(self._clock())
        if second != self._date_second:
            self._date_second = second
            self._date = f"Date: {format_datetime(datetime.fromtimestamp(second, timezone.utc))}\r\n"
        return self._date

    def build(
        self,
        *,
        to: str,
        subject: str,
        text: str,
        html: str,
        message_id: str,
        to_name: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """One message as bytes for SMTP DATA or SES ``RawMessage``.

        ``message_id`` includes the angle brackets. ``headers`` (e.g. ``List-Unsubscribe``)
        must be single-line ASCII. Raises ValueError for an unusable address or header.
        """
        if not _MESSAGE_ID.fullmatch(message_id):
            raise ValueError(f"{message_id!r} is not a Message-ID like <id@domain>")
        if to_name is None and to.isascii() and _ADDR.fullmatch(to) and len(to) < 70:
            to_line = f"To: {to}\r\n"
        else:
            to_line = fold("To", address_tokens(to_name, to))
        extra = "".join(_custom_header(k, v) for k, v in headers.items()) if headers else ""
        head = (
            f"{self._top}{to_line}{subject_header(subject)}{self._date_header()}"
            f"Message-ID: {message_id}\r\n{extra}{self._tail}"
        )
        return b"".join(
            (head.encode("ascii"), self._text_lines.encode(text), self._between, self._html_lines.encode(html), self._end)
        )
