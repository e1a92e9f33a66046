-- Delivery feedback for every sender: SMTP bounces and complaints read from a bounce mailbox
-- over IMAP, and the event webhooks of SendGrid, Mailgun and Postmark. Both write
-- campaign.delivery_event through the same ingestion as SES (feedback/ingest.py).

-- A soft bounce (4.x.x, mailbox full, a policy block) suppresses an address only once it has
-- soft-bounced often enough (feedback.soft_bounces in dags/campaigns/_policies.yaml).
ALTER TABLE crm.suppression DROP CONSTRAINT suppression_reason_check;
ALTER TABLE crm.suppression ADD CONSTRAINT suppression_reason_check
    CHECK (reason IN ('hard_bounce', 'soft_bounce', 'complaint', 'unsubscribe', 'manual', 'invalid'));

-- The soft-bounce threshold counts one address's soft-bounced messages of the last days at
-- every new soft bounce: this partial index holds soft bounces only, a small share of events.
CREATE INDEX delivery_event_soft_bounce_idx
    ON campaign.delivery_event (lower(btrim(detail ->> 'recipient')), received_at)
    WHERE event_type = 'bounced' AND bounce_type = 'Transient';

-- Reports that could not be tied to a message of the ledger (no valid VERP token, no known
-- Message-ID in the returned headers), or that are not bounces or complaints at all (an
-- auto-reply sent to the return path, a DMARC failure report): kept whole for inspection,
-- never dropped. One row per distinct report (digest of its raw bytes), so reading the same
-- mailbox message again after a crash adds nothing.
CREATE TABLE campaign.unmatched_feedback (
    feedback_id   bigserial PRIMARY KEY,
    source        text NOT NULL,                 -- 'imap:<connection id>'
    digest        text NOT NULL UNIQUE,          -- sha256 of the raw message
    reason        text NOT NULL,                 -- why it was not ingested
    report_type   text,                          -- dsn, arf, bounce_text, not_a_report
    subject       text,
    report_from   text,
    message_id    text,                          -- the report's own Message-ID
    raw           bytea NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX unmatched_feedback_received_idx ON campaign.unmatched_feedback (received_at);

-- Mailgun signs each webhook request with a one-time token: a token seen once is refused
-- after that (replay). Tokens older than the accepted signature age are refused by their
-- timestamp anyway, so rows past it are deleted as new ones arrive.
CREATE TABLE campaign.webhook_token (
    provider     text NOT NULL,
    token        text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, token)
);
CREATE INDEX webhook_token_received_idx ON campaign.webhook_token (received_at);
