"""Send push notifications through Amazon SNS mobile push, one ``Publish`` per message.

A profile's ``push_token`` holds its SNS platform endpoint ARN (registered by the app), and
its ``push_platform`` says which payload the endpoint's platform application expects. Each
message is published to ``TargetArn`` with ``MessageStructure="json"``: a ``default`` text plus
the platform's key, whose value is itself a JSON string:

- APNs (under ``APNS`` and ``APNS_SANDBOX``, so development builds work too):
  ``{"aps": {"alert": {"title", "body"}, "sound": "default"}, "link": …, <data>}``;
- FCM (key ``GCM``), in the FCM HTTP v1 shape SNS documents:
  ``{"fcmV1Message": {"message": {"notification": {"title", "body"}, "data": {"link": …, <data>}}}}``;
  v1 data values must be strings, as step data and the link are.

``PublishBatch`` is no alternative: it only targets topics. See
:mod:`campaign_orchestrator.channels.sns` for the client and its no-duplicate retry policy.

Outcomes besides those of :class:`~campaign_orchestrator.channels.sns.SnsPublishSender`:

- ``EndpointDisabled`` (APNs or FCM said the token is dead), ``InvalidParameter`` about the
  endpoint, ``NotFound`` (endpoint deleted): ``failed`` with ``disable_address``, so the
  profile is excluded until the app registers a new token;
- any other invalid parameter (payload too large…): ``failed`` (``rejected``);
- ``PlatformApplicationDisabled`` (expired APNs certificate, revoked FCM key): ``retry``, since
  no message of the batch can go out until someone fixes the application.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.sns import SnsHook

from campaign_orchestrator.channels.base import Outcome
from campaign_orchestrator.channels.sns import INVALID, SnsPublishSender

if TYPE_CHECKING:
    from collections.abc import Mapping

    from botocore.exceptions import ClientError

    from campaign_orchestrator.channels.base import Outbound

PLATFORMS = ("apns", "fcm")


def apns_payload(payload: Mapping[str, Any]) -> str:
    body: dict[str, Any] = {"aps": {"alert": {"title": payload["title"], "body": payload["body"]}, "sound": "default"}}
    if payload.get("link"):
        body["link"] = payload["link"]
    body.update(payload.get("data") or {})
    return json.dumps(body, ensure_ascii=False)


def fcm_payload(payload: Mapping[str, Any]) -> str:
    data = {"link": payload["link"]} if payload.get("link") else {}
    data.update(payload.get("data") or {})
    message: dict[str, Any] = {"notification": {"title": payload["title"], "body": payload["body"]}}
    if data:
        message["data"] = data
    return json.dumps({"fcmV1Message": {"message": message}}, ensure_ascii=False)


def push_message(platform: str, payload: Mapping[str, Any]) -> str:
    """The ``Message`` of a ``MessageStructure="json"`` publish for ``platform`` ('apns', 'fcm')."""
    if platform == "apns":
        apns = apns_payload(payload)
        keys = {"APNS": apns, "APNS_SANDBOX": apns}
    elif platform == "fcm":
        keys = {"GCM": fcm_payload(payload)}
    else:
        raise ValueError(f"unknown push platform {platform!r}; expected one of {', '.join(PLATFORMS)}")
    return json.dumps({"default": payload["body"], **keys}, ensure_ascii=False)


class SnsPushSender(SnsPublishSender):
    """Push notifications over SNS ``Publish`` to platform endpoints for one batch.

    :param aws_conn_id: Airflow AWS connection.
    :param max_workers: concurrent requests, and HTTP connections in the client's pool.
    """

    thread_name_prefix = "sns-push"

    def __init__(
        self,
        aws_conn_id: str | None = SnsHook.default_conn_name,
        max_workers: int = 8,
        attempts: int = 5,
        backoff: float = 0.25,
    ) -> None:
        super().__init__(aws_conn_id, max_workers=max_workers, attempts=attempts, backoff=backoff)

    def publish_params(self, message: Outbound) -> dict[str, Any] | Outcome:
        platform = message.recipient.profile.get("push_platform")
        if platform not in PLATFORMS:
            return Outcome("failed", reason="unknown_push_platform", error=f"push_platform is {platform!r}")
        return {
            "TargetArn": message.recipient.address,
            "MessageStructure": "json",
            "Message": push_message(platform, message.payload),
        }

    def refused(self, code: str, exc: ClientError, message: Outbound) -> Outcome | None:
        error = str(exc)[:1000]
        if code == "EndpointDisabled":
            return Outcome("failed", reason="endpoint_disabled", error=error, disable_address=True)
        if code == "NotFound":
            return Outcome("failed", reason="endpoint_not_found", error=error, disable_address=True)
        if code in INVALID:
            text = error.lower()
            if "targetarn" in text or "endpoint" in text:
                return Outcome("failed", reason="endpoint_disabled", error=error, disable_address=True)
            return Outcome("failed", reason="rejected", error=error)
        return None
