-- Delivery feedback: what the providers reported after a send (SES event notifications, SNS
-- delivery status logs), linked to the ledger row by provider_message_id when one matches.
-- Events for messages the ledger does not know (another sender on the same account, or
-- rows already deleted with their run) are kept with run_key NULL: a bounce is still a bounce.
-- Ingestion is at-least-once from SQS; provider_event_id makes it idempotent.
-- See plugins/campaign_orchestrator/feedback/.
CREATE TABLE campaign.delivery_event (
    event_id             bigserial PRIMARY KEY,
    provider_message_id  text NOT NULL,
    run_key              bigint,      -- no foreign key: feedback outlives a deleted run
    step_id              text,
    profile_id           bigint,
    entity_key           text,
    channel              text NOT NULL,
    event_type           text NOT NULL CHECK (event_type IN
        ('delivered', 'bounced', 'complained', 'opened', 'clicked', 'rejected', 'delivery_failed')),
    bounce_type          text CHECK (bounce_type IN ('Permanent', 'Transient', 'Undetermined')),
    detail               jsonb,       -- recipient, sub-type, diagnostic, link, user agent...
    occurred_at          timestamptz NOT NULL,
    received_at          timestamptz NOT NULL DEFAULT now(),
    provider_event_id    text NOT NULL UNIQUE,
    CONSTRAINT delivery_event_bounce_type CHECK ((event_type = 'bounced') = (bounce_type IS NOT NULL))
);
CREATE INDEX delivery_event_step_idx ON campaign.delivery_event (run_key, step_id, event_type);
CREATE INDEX delivery_event_provider_id_idx ON campaign.delivery_event (provider_message_id);
