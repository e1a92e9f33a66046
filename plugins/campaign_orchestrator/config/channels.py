"""The steps that send, one model per channel, and ``Step``: any step of a campaign."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Discriminator, Field, Tag, field_validator, model_validator

from campaign_orchestrator.config.base import IDENTIFIER, StrictModel
from campaign_orchestrator.config.steps import StepBase, WaitStep

def _check_address(value: str | None) -> str | None:
    if value is None:
        return value
    from email.utils import parseaddr

    _, addr = parseaddr(value)
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", addr):
        raise ValueError(f"{value!r} is not an email address like 'Name <news@example.com>'")
    return value


EmailAddress = Annotated[str, AfterValidator(_check_address)]


class EmailTracking(StrictModel):
    """Open and click tracking of an email step's HTML part, through the tracking endpoint."""

    opens: bool = Field(default=True, description="Add a 1x1 open pixel before </body>")
    clicks: bool = Field(
        default=True,
        description="Send every http(s) link through the click endpoint, except the unsubscribe link "
        "and links marked data-no-track",
    )


NO_TRACKING = EmailTracking(opens=False, clicks=False)


class EmailStep(StepBase):
    """One email per audience member (or per entity): subject.txt, body.html and body.txt."""

    channel: Literal["email"]
    template: str = Field(
        description="Folder under include/templates/ holding subject.txt, body.html and body.txt"
    )
    sender: EmailAddress = Field(description="From address, e.g. 'Acme Travel <news@acme.example>'")
    reply_to: EmailAddress | None = None
    provider: Literal["smtp", "ses", "sendgrid", "mailgun", "postmark"] = Field(
        default="smtp",
        description="smtp (smtp_default), ses (aws_default), or the SMTP relay of sendgrid (smtp_sendgrid), "
        "mailgun (smtp_mailgun) or postmark (smtp_postmark); connection_id overrides the default connection",
    )
    tracking: EmailTracking | None = Field(
        default=None,
        description="{opens: true, clicks: true}; true or false sets both. Default: both for marketing, "
        "neither for transactional (its links, password resets say, stay direct)",
    )

    @field_validator("tracking", mode="before")
    @classmethod
    def _tracking_shorthand(cls, value: Any) -> Any:
        return {"opens": value, "clicks": value} if isinstance(value, bool) else value

    @property
    def tracks(self) -> EmailTracking:
        """The tracking in effect: ``tracking``, or the purpose's default."""
        if self.tracking is not None:
            return self.tracking
        return EmailTracking() if self.purpose == "marketing" else NO_TRACKING


class SmsStep(StepBase):
    """One SMS through Amazon SNS: the folder's sms.txt, to the profile's E.164 phone number."""

    channel: Literal["sms"]
    template: str = Field(description="Folder under include/templates/ holding sms.txt")
    provider: Literal["sns"] = "sns"
    sender_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9]{1,11}$", description="Alphanumeric sender id, where the country allows"
    )
    origination_number: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{7,14}$")
    sms_type: Literal["Promotional", "Transactional"] | None = Field(
        default=None, description="SNS SMSType; defaults from purpose"
    )
    max_segments: int = Field(
        default=3, ge=1, le=10, description="A message longer than this many segments fails instead of sending"
    )


class PushStep(StepBase):
    """One push notification through Amazon SNS platform endpoints (APNs and FCM)."""

    channel: Literal["push"]
    template: str = Field(description="Folder under include/templates/ holding title.txt and body.txt (link.txt optional)")
    provider: Literal["sns"] = "sns"
    data: dict[str, str] = Field(default_factory=dict, description="Custom data keys; values are Jinja strings")


class DirectMailStep(StepBase):
    """One extract per run of postal addresses plus personalization fields, with a manifest."""

    channel: Literal["direct_mail"]
    destination: str = Field(description="Folder URL: s3://bucket/prefix (aws connection) or file:///path")
    formats: list[Literal["csv", "parquet"]] = Field(default_factory=lambda: ["csv"], min_length=1)
    fields: list[str] = Field(
        default_factory=lambda: ["first_name", "last_name"],
        description="Profile columns added to the postal address in the extract",
    )

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(IDENTIFIER, name):
                raise ValueError(f"{name!r} is not a column name")
        return value

    @field_validator("destination")
    @classmethod
    def _destination(cls, value: str) -> str:
        if not re.match(r"^(s3|file)://", value):
            raise ValueError(f"{value!r} must be an s3://bucket/prefix or file:///path URL")
        return value.rstrip("/")


class WebhookStep(StepBase):
    """POST JSON to an HTTP endpoint (http connection), signed with HMAC, per message or per batch."""

    channel: Literal["webhook"]
    template: str = Field(description="Folder under include/templates/ holding payload.json")
    endpoint: str = Field(default="", description="Path appended to the connection's host, e.g. /hooks/campaign")
    mode: Literal["per_message", "per_batch"] = "per_message"
    consent_channel: Literal["email", "sms", "push", "direct_mail"] | None = Field(
        default=None, description="Whose consent a marketing webhook needs (required for marketing)"
    )

    @model_validator(mode="after")
    def _marketing_needs_a_consent_channel(self) -> WebhookStep:
        if self.purpose == "marketing" and self.consent_channel is None:
            raise ValueError(
                "a marketing webhook step needs consent_channel (email, sms, push or direct_mail), "
                "or purpose: transactional"
            )
        return self


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "wait" if "wait" in value and "channel" not in value else value.get("channel")
    return getattr(value, "channel", None)


MessageStep = EmailStep | SmsStep | PushStep | DirectMailStep | WebhookStep
Step = Annotated[
    Annotated[EmailStep, Tag("email")]
    | Annotated[SmsStep, Tag("sms")]
    | Annotated[PushStep, Tag("push")]
    | Annotated[DirectMailStep, Tag("direct_mail")]
    | Annotated[WebhookStep, Tag("webhook")]
    | Annotated[WaitStep, Tag("wait")],
    Discriminator(_step_kind),
]
STEP_MODELS: dict[str, type[StepBase]] = {
    "email": EmailStep,
    "sms": SmsStep,
    "push": PushStep,
    "direct_mail": DirectMailStep,
    "webhook": WebhookStep,
}
