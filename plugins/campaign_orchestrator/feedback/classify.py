"""Hard or soft: one rule for every source of bounces (DSNs, webhooks), from the status code.

RFC 3463 enhanced status codes (``class.subject.detail``), with basic SMTP reply codes when
no enhanced code is given:

- ``5.x.x`` is a **hard** bounce (``Permanent``): the address is suppressed at once;
- ``4.x.x`` is a **soft** bounce (``Transient``);
- two permanent codes are soft all the same, because they say nothing lasting about the
  address: ``5.2.2`` (mailbox full: the owner may empty it; RFC 3463 calls it a possibly
  temporary condition) and ``5.7.x`` (security or policy: a block of our message or sending
  IP, DMARC, spam content — suppressing the address would punish it for our configuration).
  Basic code ``552`` without an enhanced code is read as mailbox full.

Soft bounces suppress an address only once it has soft-bounced on enough messages in a
while (``soft_bounces`` in ``dags/campaigns/_policies.yaml``, 3 in 30 days by default).
A bounce with no code at all is ``Undetermined``, unless the source says it is permanent.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_BASIC = re.compile(r"(?<!\d)([245])(\d\d)(?=[ -]|$)")


class Classification(NamedTuple):
    bounce_type: str
    """``Permanent``, ``Transient`` or ``Undetermined`` (campaign.delivery_event.bounce_type)."""
    bounce_class: str
    """``bad_address`` (5.1.x), ``permanent`` (other 5.x.x), ``mailbox_full``, ``policy``,
    ``temporary`` (4.x.x) or ``unknown``."""
    status: str | None
    """The enhanced status code the decision rests on, when there is one."""


def enhanced_code(text: str | None) -> str | None:
    """The first RFC 3463 code of class 2, 4 or 5 in ``text`` (``"smtp; 550 5.1.1 …"`` gives 5.1.1)."""
    match = _ENHANCED.search(text or "")
    return ".".join(match.groups()) if match else None


def basic_code(text: str | None) -> int | None:
    """The first SMTP reply code (``550``) in ``text``."""
    match = _BASIC.search(text or "")
    return int("".join(match.groups())) if match else None


def best_status(status: str | None, *texts: str | None) -> str | None:
    """The code to classify by: ``status`` (a DSN's Status field), unless it is unspecific
    (``x.0.0``) and a diagnostic text gives a specific code of the same class."""
    status = enhanced_code(status)
    for text in texts:
        specific = enhanced_code(text)
        if specific and (status is None or (status.endswith(".0.0") and specific[0] == status[0])):
            return specific
    return status


def classify(status: str | None, diagnostic: str | None = None, *, default: str = "Undetermined") -> Classification:
    """Hard or soft by the rule above; ``default`` is the type when no code can be found.

    :param status: an enhanced status code (or text holding one).
    :param diagnostic: the remote server's reply, e.g. a DSN's Diagnostic-Code.
    """
    code = best_status(status, diagnostic)
    if code is None:
        basic = basic_code(diagnostic) or basic_code(status)
        if basic is None:
            return Classification(default, "unknown" if default == "Undetermined" else "permanent", None)
        if basic == 552:
            return Classification("Transient", "mailbox_full", None)
        if 400 <= basic < 500:
            return Classification("Transient", "temporary", None)
        if 500 <= basic < 600:
            return Classification("Permanent", "permanent", None)
        return Classification(default, "unknown", None)
    klass, subject, _ = code.split(".")
    if klass == "4":
        return Classification("Transient", "temporary", code)
    if klass == "5":
        if code == "5.2.2":
            return Classification("Transient", "mailbox_full", code)
        if subject == "7":
            return Classification("Transient", "policy", code)
        return Classification("Permanent", "bad_address" if subject == "1" else "permanent", code)
    return Classification(default, "unknown", code)  # 2.x.x: a success code in a failure report
