"""The fast MIME builder, checked against the stdlib parser (the reference implementation)."""

from __future__ import annotations

import email
import email.header
import email.policy
import random
import re
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaign_orchestrator.channels.email import mime
from campaign_orchestrator.channels.email.mime import MimeBuilder, QpLines, envelope_address

CLOCK = 1_767_225_600.0  # 2026-01-01T00:00:00Z
MID = "<0b7e1d6c-5f35-5d0c-9a44-2d3f1c0e9b11@acme.example>"


def builder(**kwargs) -> MimeBuilder:
    kwargs.setdefault("reply_to", "Acme Support <help@acme.example>")
    return MimeBuilder("Acme Travel <news@acme.example>", clock=lambda: CLOCK, **kwargs)


def build(b: MimeBuilder | None = None, **kwargs) -> bytes:
    args = {"to": "ana@example.com", "subject": "Spring offers", "text": "Hi", "html": "<p>Hi</p>", "message_id": MID}
    args.update(kwargs)
    return (b or builder()).build(**args)


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def assert_wire_format(raw: bytes) -> None:
    assert raw.isascii()
    assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.endswith(b"\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert all(len(line) <= 78 for line in head.split(b"\r\n")), head
    # Quoted-printable lines (RFC 2045 6.7) never pass 76.
    assert all(len(line) <= 76 for line in body.split(b"\r\n")), body
    message = parse(raw)
    assert not message.defects
    for part in message.walk():
        assert not part.defects, part.defects


def test_headers_and_structure() -> None:
    raw = build(headers={"List-Unsubscribe": "<https://acme.example/u/1>, <mailto:u@acme.example>"})
    assert_wire_format(raw)
    message = parse(raw)
    assert message["From"].addresses[0].display_name == "Acme Travel"
    assert message["From"].addresses[0].addr_spec == "news@acme.example"
    assert message["Reply-To"].addresses[0].addr_spec == "help@acme.example"
    assert message["To"].addresses[0].addr_spec == "ana@example.com"
    assert message["Subject"] == "Spring offers"
    assert message["Message-ID"] == MID
    assert message["MIME-Version"] == "1.0"
    assert message["Date"].datetime == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert message["List-Unsubscribe"] == "<https://acme.example/u/1>, <mailto:u@acme.example>"
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.iter_parts()
    assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert plain.get_content_charset() == html.get_content_charset() == "utf-8"
    assert plain["Content-Transfer-Encoding"] == "quoted-printable"
    assert message.get_body(("html",)).get_content() == "<p>Hi</p>"
    assert message.get_body(("plain",)).get_content() == "Hi"
    for name in ("From", "To", "Subject", "Date", "Message-ID", "Content-Type"):
        assert len(message.get_all(name)) == 1


def test_envelope_from_and_domain() -> None:
    b = MimeBuilder("Acme <News@Bücher.example>")
    assert b.envelope_from == "News@xn--bcher-kva.example"
    assert b.domain == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    "subject",
    [
        "Spring offers",
        "Grüße aus Köln, Ana!",
        "🎉 Your trip 🏝️ is ready — 20 % off ✈️",
        "日本語の件名です。ご確認ください。" * 8,
        "A long plain subject " * 12,
        "x" * 300,
        "é" * 1000,
        "Literal =?utf-8?q?not_an_encoded_word?= here",
        'Quotes "and" \\backslashes\\ and (parens), commas; colons: <angles>',
        "",
    ],
)
def test_subject_round_trips(subject: str) -> None:
    raw = build(subject=subject)
    assert_wire_format(raw)
    assert parse(raw)["Subject"] == subject.strip()


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Hi\r\nBcc: victim@example.com", "Hi Bcc: victim@example.com"),
        ("Hi\nBcc: victim@example.com", "Hi Bcc: victim@example.com"),
        ("Hi\rX-Evil: 1", "Hi X-Evil: 1"),
        ("Grüße\r\nBcc: victim@example.com", "Grüße Bcc: victim@example.com"),
        ("  tabs\tand\x00controls\x1b  ", "tabs and controls"),
        ("line\u2028separator", "line separator"),
    ],
)
def test_subject_cannot_inject_headers(subject: str, expected: str) -> None:
    raw = build(subject=subject)
    assert_wire_format(raw)
    message = parse(raw)
    assert message["Subject"] == expected
    assert message["Bcc"] is None and message["X-Evil"] is None


@pytest.mark.parametrize(
    "name",
    [
        "Ana Lima",
        "Lima, Ana",
        'Ana "the Traveller" Lima',
        "Back\\slash",
        "Dr. A. Lima (ACME)",
        "Zoë Ångström",
        "田中 太郎",
        "🙂 Smiley",
        "Ana <ana@evil.example>",
        "=?utf-8?q?fake?=",
        "Very Long Name " * 10,
    ],
)
def test_display_names_round_trip(name: str) -> None:
    raw = build(to_name=name)
    assert_wire_format(raw)
    (address,) = parse(raw)["To"].addresses
    assert address.addr_spec == "ana@example.com"
    assert address.display_name == name.strip()


def test_long_non_ascii_display_name_follows_rfc_2047() -> None:
    # Longer names need several encoded-words; RFC 2047 6.2 says the space between adjacent
    # encoded-words is not text. The stdlib's address parser adds one anyway (it reads each
    # word as a separate phrase word), so decode the way the RFC says, with decode_header.
    name = "Zoë Ångström-Lindqvist, Département des Opérations Spéciales"
    raw = build(to_name=name)
    assert_wire_format(raw)
    value = parse(raw)["To"]
    assert value.addresses[0].addr_spec == "ana@example.com"
    folded = raw.split(b"\r\nTo: ", 1)[1].split(b"\r\nSubject:", 1)[0].decode()
    decoded = str(email.header.make_header(email.header.decode_header(folded.replace("\r\n", ""))))
    assert decoded == f"{name} <ana@example.com>"


def test_display_name_cannot_inject_headers() -> None:
    raw = build(to_name="Ana\r\nBcc: victim@example.com")
    message = parse(raw)
    assert message["Bcc"] is None
    assert message["To"].addresses[0].display_name == "Ana Bcc: victim@example.com"
    assert message["To"].addresses[0].addr_spec == "ana@example.com"


@pytest.mark.parametrize(
    "address",
    [
        "ana@example.com\r\nBcc: victim@example.com",
        "ana@example.com\n",
        "ana@example.com, eve@example.com",
        "Ana <ana@example.com>",
        "no-at-sign",
        "jürgen@example.com",
    ],
)
def test_bad_recipient_addresses_raise(address: str) -> None:
    with pytest.raises(ValueError):
        build(to=address)


def test_idn_recipient_domain_is_punycode() -> None:
    assert envelope_address("ana@bücher.example") == "ana@xn--bcher-kva.example"
    assert parse(build(to="ana@bücher.example"))["To"].addresses[0].domain == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"message_id": "<a@b>\r\nBcc: x@y"}, "Message-ID"),
        ({"message_id": "no-brackets@b"}, "Message-ID"),
        ({"headers": {"X-Campaign": "a\r\nBcc: x@y"}}, "one line"),
        ({"headers": {"X-Campaign": "café"}}, "ASCII"),
        ({"headers": {"Bad Name": "x"}}, "extra header"),
        ({"headers": {"Subject": "override"}}, "extra header"),
        ({"headers": {"bcc\r\nX": "x"}}, "extra header"),
    ],
)
def test_unsafe_headers_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build(**kwargs)


def test_long_extra_header_is_folded() -> None:
    value = ", ".join(f"<https://acme.example/unsubscribe/{i}/{'x' * 20}>" for i in range(4))
    raw = build(headers={"List-Unsubscribe": value})
    assert_wire_format(raw)
    assert parse(raw)["List-Unsubscribe"] == value


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab<>:/., \t\x0b\x1f", max_size=200))
def test_extra_headers_fold_at_single_spaces_only(value: str) -> None:
    line = mime._custom_header("List-Unsubscribe", value)
    stripped = value.strip(" \t")
    assert line == mime.fold("List-Unsubscribe", mime._FOLD_POINT.split(stripped))
    assert line.replace("\r\n ", " ") == f"List-Unsubscribe: {stripped}\r\n"


TRICKY_BODIES = [
    "",
    "Hi Ana",
    "Line one\nLine two\n",
    ".starts with a dot\n.\n..\n. \nend",
    "From the team\nFrom here\n>From there\nnot From at start",
    "From " + "y" * 200,
    "trailing spaces   \ntrailing tab\t\nend with space ",
    "x" * 5000,
    "word " * 400,
    "Grüße, 日本語, emoji 🎉🏝️, ZWJ 👩‍👩‍👧, RTL שלום",
    "equals = signs =3D and =?utf-8?q?x?= and soft=\nbreak look-alikes =\n",
    "windows\r\nline\r\nends\r\n",
    "mac\rline\rends",
    "\x00nul and \x1bescape and \x7fdel",
    "--=_co_0000 fake boundary\n--=_co_0000--\n",
    "<html><body><p style=\"color:red\">Price: 5 €</p>\n<a href=\"https://acme.example/?a=1&b=2\">x</a></body></html>",
]


@pytest.mark.parametrize("body", TRICKY_BODIES)
def test_bodies_round_trip(body: str) -> None:
    raw = build(text=body, html=body)
    assert_wire_format(raw)
    message = parse(raw)
    expected = body.replace("\r\n", "\n").replace("\r", "\n")
    assert lf(message.get_body(("plain",)).get_content()) == expected
    assert lf(message.get_body(("html",)).get_content()) == expected


def test_body_cannot_contain_the_boundary() -> None:
    b = builder()
    body = f"--{b.boundary}\n--{b.boundary}--\n"
    raw = build(b, text=body, html=body)
    message = parse(raw)
    assert len(list(message.iter_parts())) == 2
    assert lf(message.get_body(("plain",)).get_content()) == body


def test_from_lines_are_protected_from_mbox_quoting() -> None:
    raw = build(text="From here\n" + "From " + "z" * 100)
    assert b"\r\nFrom " not in raw.partition(b"\r\n\r\n")[2]
    assert_wire_format(raw)


def test_random_messages_round_trip() -> None:
    rng = random.Random(20260101)
    alphabet = "abcXYZ019 .,;:'\"\\<>()[]@=?_-\t\r\néüßøæ日本🎉\u00a0\u2028"
    b = builder()
    for _ in range(300):
        def text(n: int) -> str:
            return "".join(rng.choice(alphabet) for _ in range(rng.randrange(n)))

        # Display names up to 42 UTF-8 bytes are one encoded-word; see the test below for longer.
        # (No NBSP in names: the stdlib's address parser turns it into a space.)
        name = text(40).replace("\u00a0", "").encode()[:42].decode("utf-8", "ignore")
        subject, body = text(150), text(400)
        raw = b.build(to="ana@example.com", to_name=name, subject=subject, text=body, html=body, message_id=MID)
        assert_wire_format(raw)
        message = parse(raw)
        clean = lambda s: re.sub(r"[ \x00-\x1f\x7f\x85\u2028\u2029]+", " ", s).strip()  # noqa: E731
        assert message["Subject"] == clean(subject)
        assert message["To"].addresses[0].display_name == clean(name)
        expected = body.replace("\r\n", "\n").replace("\r", "\n")
        assert lf(message.get_body(("plain",)).get_content()) == expected


def test_date_is_formatted_once_per_second() -> None:
    now = [CLOCK]
    b = MimeBuilder("news@acme.example", clock=lambda: now[0])
    first = parse(build(b))["Date"].datetime
    now[0] += 0.5
    assert parse(build(b))["Date"].datetime == first
    now[0] += 1
    assert (parse(build(b))["Date"].datetime - first).total_seconds() == 1


def test_quoted_printable_line_rules_hold_at_the_edges() -> None:
    # Pieces that land a trailing space, a tab, an escape or "From " right at column 75-76.
    rng = random.Random(5)
    pieces = ["a", "é", "=", " ", "\t", "\n", "From ", "\nFrom ", "x" * 70, "x" * 74 + " \n", "x" * 75 + "\t", "日"]
    b = builder()
    for _ in range(1000):
        body = "".join(rng.choice(pieces) for _ in range(rng.randrange(80)))
        raw = build(b, text=body, html=body)
        assert_wire_format(raw)
        payload = raw.partition(b"\r\n\r\n")[2]
        assert not any(line.startswith(b"From ") or line.endswith((b" ", b"\t")) for line in payload.split(b"\r\n"))
        assert lf(parse(raw).get_body(("plain",)).get_content()) == body


# Pieces that put a trailing space or tab, a lone ".", an "=", a non-ASCII character, a
# "From " or a CR/LF mix at the end of a line, of a soft-broken line or of the body.
QP_PIECES = ["a", "é", "日", "🎉", "=", " ", "\t", ".", "\r", "\n", "\r\n", "\n\r", "From ", "\nFrom ",
             "x" * 70, "x" * 74 + " ", "x" * 75 + "\t", "y" * 73 + "=", "\x00", "\x7f", ".\n"]
qp_texts = st.lists(st.one_of(st.sampled_from(QP_PIECES), st.text(max_size=90)), max_size=30).map("".join)


@settings(max_examples=600, deadline=None)
@given(st.lists(qp_texts, min_size=1, max_size=4))
def test_line_by_line_quoted_printable_is_the_whole_body_encoding(texts: list[str]) -> None:
    # One cache for all: a line met before, as a middle or as the last line, comes from it.
    lines = QpLines()
    for text in texts:
        for body in (text, text + "\n", f"{text}\n{text}", text.rstrip("\r\n"), text + " "):
            assert lines.encode(body) == mime._qp(body), body
            assert lines.encode(body) == mime._qp(body), body  # now every line is known


def test_a_body_that_cannot_be_encoded_fails_alone() -> None:
    lines = QpLines()
    with pytest.raises(UnicodeEncodeError):
        lines.encode("Hi\nlone \ud800 surrogate\nend")
    assert lines.encode("Hi\nthere\nend") == mime._qp("Hi\nthere\nend")


def test_line_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mime, "_QP_CACHE_CHARS", 20_000)
    lines = QpLines()
    for n in range(2000):
        body = f"static line\nHi {n},\n" + "z" * (mime._QP_CACHED_LINE + 1) + f"\n{n}\nstatic end"
        assert lines.encode(body) == mime._qp(body)
        assert sum(len(line) + len(qp or b"") for line, qp in lines.items()) <= 20_000 + 3 * mime._QP_CACHED_LINE
    assert "static line" in lines  # the template's lines, met first, stay
    assert all(len(line) <= mime._QP_CACHED_LINE for line in lines)


def test_bodies_personalised_throughout_are_encoded_whole() -> None:
    lines = QpLines()
    for n in range(50):
        body = "\n".join(f"{n} line {i}" for i in range(20))
        assert lines.encode(body) == mime._qp(body)
    assert len(lines) < 40  # not every line of every body


def test_builder_output_does_not_depend_on_what_it_built_before() -> None:
    b = builder()
    bodies = ["From a\n. \n" + "x" * 80 + "\t\nend ", "end \nFrom a", "x" * 74 + " \n. ", ". "]
    first = [build(b, text=body, html=body[::-1]) for body in bodies]
    assert [build(b, text=body, html=body[::-1]) for body in bodies] == first
    for body, raw in zip(bodies, first):
        fresh = builder()  # an empty cache, another boundary
        expected = raw.replace(b.boundary.encode(), fresh.boundary.encode())
        assert build(fresh, text=body, html=body[::-1]) == expected
