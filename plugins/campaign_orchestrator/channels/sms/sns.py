"""Send SMS through Amazon SNS, one ``Publish`` per message, several at a time.

Why not ``PublishBatch``: it only publishes to a topic (``TopicArn`` is required), and an SMS
to one person is a ``Publish`` with ``PhoneNumber``; a topic per recipient would mean
creating and confirming subscriptions for every send. Per-message calls also give a
per-message outcome and SNS ``MessageId``, which is what the ledger records. Throughput comes
from a small thread pool sharing one boto3 client (see :mod:`campaign_orchestrator.channels.sns`
for the client and its no-duplicate retry policy).

A number on the account's SNS opt-out list (people who replied STOP) would be dropped by SNS
anyway; it is read once per batch and such a message fails as ``provider_opted_out`` without
being published. :func:`sync_opt_outs` copies that list into ``crm.consent`` so targeting
excludes those profiles up front.

Outcomes besides those of :class:`~campaign_orchestrator.channels.sns.SnsPublishSender`:

- ``InvalidParameter`` naming the phone number: ``failed`` (``invalid_phone_number``);
  any other invalid parameter (sender id, message too long…): ``failed`` (``invalid_parameter``);
- ``OptedOut``: ``failed`` (``provider_opted_out``); ``EndpointDisabled``: ``failed``
  (``endpoint_disabled``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from airflow.providers.amazon.aws.hooks.sns import SnsHook
from psycopg import sql

from campaign_orchestrator.channels.base import Outcome, TransientSendError
from campaign_orchestrator.channels.registry import CHANNELS
from campaign_orchestrator.channels.sns import INVALID, SnsPublishSender, normalize_phone, opted_out_numbers
from campaign_orchestrator.sqlfiles import query

if TYPE_CHECKING:
    import psycopg
    from botocore.exceptions import ClientError

    from campaign_orchestrator.channels.base import Outbound
    from campaign_orchestrator.config.channels import SmsStep

log = logging.getLogger(__name__)

SmsType = Literal["Promotional", "Transactional"]


def sms_type(step: SmsStep) -> SmsType:
    """The step's SNS ``SMSType``: as configured, else Transactional for a transactional step."""
    return step.sms_type or ("Transactional" if step.purpose == "transactional" else "Promotional")


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


class SnsSmsSender(SnsPublishSender):
    """SMS over SNS ``Publish`` for one batch; outcomes in input order.

    :param aws_conn_id: Airflow AWS connection.
    :param sms_type: ``AWS.SNS.SMS.SMSType``: Promotional (cheaper, best effort) or
        Transactional (higher delivery priority).
    :param sender_id: ``AWS.SNS.SMS.SenderID``, an alphanumeric sender where the country allows.
    :param origination_number: ``AWS.MM.SMS.OriginationNumber``, a number the account owns.
    :param max_workers: concurrent requests, and HTTP connections in the client's pool.
    """

    thread_name_prefix = "sns-sms"

    def __init__(
        self,
        aws_conn_id: str | None = SnsHook.default_conn_name,
        sms_type: SmsType = "Promotional",
        sender_id: str | None = None,
        origination_number: str | None = None,
        max_workers: int = 8,
        attempts: int = 5,
        backoff: float = 0.25,
    ) -> None:
        super().__init__(aws_conn_id, max_workers=max_workers, attempts=attempts, backoff=backoff)
        attributes = {"AWS.SNS.SMS.SMSType": _string(sms_type)}
        if sender_id:
            attributes["AWS.SNS.SMS.SenderID"] = _string(sender_id)
        if origination_number:
            attributes["AWS.MM.SMS.OriginationNumber"] = _string(origination_number)
        self.attributes = attributes
        self.opted_out: frozenset[str] = frozenset()

    def open(self) -> None:
        super().open()
        try:
            self.opted_out = frozenset(self.hook.opted_out_numbers(self._client))
        except Exception as exc:
            self.close()
            # Sending without the list could text people who replied STOP: wait for it.
            raise TransientSendError(f"cannot read the SNS SMS opt-out list: {exc}") from exc
        log.info("SNS opt-out list: %d numbers", len(self.opted_out))

    def publish_params(self, message: Outbound) -> dict[str, Any] | Outcome:
        number = message.recipient.address
        if normalize_phone(number) in self.opted_out:
            return Outcome("failed", reason="provider_opted_out", error=f"{number} is on the SNS opt-out list")
        return {"PhoneNumber": number, "Message": message.payload, "MessageAttributes": self.attributes}

    def refused(self, code: str, exc: ClientError, message: Outbound) -> Outcome | None:
        error = str(exc)[:1000]
        if code in INVALID:
            reason = "invalid_phone_number" if "phone" in error.lower() else "invalid_parameter"
            return Outcome("failed", reason=reason, error=error)
        if code in ("OptedOut", "OptedOutException"):
            return Outcome("failed", reason="provider_opted_out", error=error)
        if code == "EndpointDisabled":
            return Outcome("failed", reason="endpoint_disabled", error=error)
        return None


def sync_opt_outs(conn: psycopg.Connection, hook_or_client: Any) -> int:
    """Mark ``sms`` consent ``opted_out`` (source ``sns_opt_out``) for every profile whose
    normalized phone number is on the account's SNS opt-out list; return how many consent
    rows changed. One statement, the list bound as an array.

    :param conn: the campaign store.
    :param hook_or_client: an ``SnsHook`` (its ``get_conn()`` client is used), or a boto3 SNS client.
    """
    client = hook_or_client.get_conn() if isinstance(hook_or_client, SnsHook) else hook_or_client
    numbers = sorted(opted_out_numbers(client))
    statement = query("sync_sms_opt_outs", normalized=sql.SQL(CHANNELS["sms"].normalized_sql))  # type: ignore[arg-type]
    with conn.transaction():
        changed = conn.execute(statement, {"numbers": numbers}).rowcount
    log.info("SNS opt-out list: %d numbers, %d profiles newly opted out of sms", len(numbers), changed)
    return changed
