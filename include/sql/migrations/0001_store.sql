-- The campaign store: customer data (schema crm) and the orchestrator's own tables
-- (schema campaign). Applied once by `campaigns store migrate` or a DAG's prepare task;
-- never edit an applied migration, add a new numbered file instead.

CREATE SCHEMA IF NOT EXISTS crm;
CREATE SCHEMA IF NOT EXISTS campaign;

-- ---------------------------------------------------------------------------------------
-- Customer data
-- ---------------------------------------------------------------------------------------

-- The skinny profile: identity, addresses per channel and the fields messages personalize
-- with. Anything bigger belongs in a linked entity.
CREATE TABLE crm.profile (
    profile_id     bigint PRIMARY KEY,
    email          text,
    phone          text,          -- E.164, e.g. +33612345678
    push_token     text,
    push_platform  text CHECK (push_platform IN ('apns', 'fcm')),
    locale         text NOT NULL DEFAULT 'en',
    time_zone      text NOT NULL DEFAULT 'UTC',
    first_name     text,
    last_name      text,
    address_line1  text,
    address_line2  text,
    postal_code    text,
    city           text,
    region         text,
    country_code   char(2),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    version        bigint NOT NULL DEFAULT 1
);
CREATE INDEX profile_email_idx ON crm.profile (lower(btrim(email)));

-- Current consent per profile and channel. No row means 'unknown'.
CREATE TABLE crm.consent (
    profile_id  bigint NOT NULL REFERENCES crm.profile ON DELETE CASCADE,
    channel     text NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'direct_mail')),
    status      text NOT NULL CHECK (status IN ('opted_in', 'opted_out', 'unknown')),
    source      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (profile_id, channel)
);

-- Every consent change, appended by trigger: who changed what, when and from where.
CREATE TABLE crm.consent_history (
    history_id   bigserial PRIMARY KEY,
    profile_id   bigint NOT NULL,
    channel      text NOT NULL,
    status       text NOT NULL,
    source       text NOT NULL,
    recorded_at  timestamptz NOT NULL
);
CREATE INDEX consent_history_profile_idx ON crm.consent_history (profile_id, channel, recorded_at);

-- Statement-level triggers with transition tables: a bulk load of millions of consent rows
-- writes its history in one set-based INSERT instead of one trigger call per row.
CREATE FUNCTION crm.consent_history_from_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crm.consent_history (profile_id, channel, status, source, recorded_at)
    SELECT profile_id, channel, status, source, updated_at FROM new_rows;
    RETURN NULL;
END $$;

CREATE FUNCTION crm.consent_history_from_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crm.consent_history (profile_id, channel, status, source, recorded_at)
    SELECT n.profile_id, n.channel, n.status, n.source, n.updated_at
    FROM new_rows n JOIN old_rows o USING (profile_id, channel)
    WHERE (n.status, n.source) IS DISTINCT FROM (o.status, o.source);
    RETURN NULL;
END $$;

CREATE TRIGGER consent_history_insert AFTER INSERT ON crm.consent
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION crm.consent_history_from_insert();
CREATE TRIGGER consent_history_update AFTER UPDATE ON crm.consent
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION crm.consent_history_from_update();

-- Address-level suppression: an address here gets no message on that channel, whichever
-- profile carries it. Addresses are stored normalized (lower-case, trimmed).
CREATE TABLE crm.suppression (
    channel     text NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'direct_mail')),
    address     text NOT NULL,
    reason      text NOT NULL CHECK (reason IN ('hard_bounce', 'complaint', 'unsubscribe', 'manual', 'invalid')),
    source      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, address),
    -- Matching is on the normalized form; a row stored otherwise would silently suppress nothing.
    CONSTRAINT suppression_address_normalized CHECK (address = lower(btrim(address)))
);

-- Example business entities linked to profiles, for segmentation and enrichment.
CREATE TABLE crm.product (
    product_id  bigint PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    category    text NOT NULL,
    price       numeric(10, 2) NOT NULL,
    active      boolean NOT NULL DEFAULT true,
    version     bigint NOT NULL DEFAULT 1
);
CREATE INDEX product_category_idx ON crm.product (category);

CREATE TABLE crm.inventory (
    product_id     bigint PRIMARY KEY REFERENCES crm.product ON DELETE CASCADE,
    quantity       integer NOT NULL CHECK (quantity >= 0),
    reorder_level  integer NOT NULL DEFAULT 10,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    version        bigint NOT NULL DEFAULT 1
);
CREATE INDEX inventory_low_stock_idx ON crm.inventory (product_id) WHERE quantity <= reorder_level;

CREATE TABLE crm.booking (
    booking_id  bigint PRIMARY KEY,
    profile_id  bigint NOT NULL REFERENCES crm.profile ON DELETE CASCADE,
    product_id  bigint NOT NULL REFERENCES crm.product,
    status      text NOT NULL CHECK (status IN ('confirmed', 'cancelled', 'completed')),
    booked_at   timestamptz NOT NULL,
    starts_on   date NOT NULL,
    amount      numeric(10, 2) NOT NULL,
    version     bigint NOT NULL DEFAULT 1
);
CREATE INDEX booking_profile_idx ON crm.booking (profile_id);
CREATE INDEX booking_product_idx ON crm.booking (product_id, starts_on);
CREATE INDEX booking_starts_idx ON crm.booking (starts_on) WHERE status = 'confirmed';
CREATE INDEX booking_booked_at_idx ON crm.booking (booked_at);

CREATE TABLE crm.plan (
    plan_id        bigint PRIMARY KEY,
    code           text NOT NULL UNIQUE,
    name           text NOT NULL,
    tier           text NOT NULL,
    monthly_price  numeric(10, 2) NOT NULL,
    version        bigint NOT NULL DEFAULT 1
);

CREATE TABLE crm.subscription (
    subscription_id  bigint PRIMARY KEY,
    profile_id       bigint NOT NULL REFERENCES crm.profile ON DELETE CASCADE,
    plan_id          bigint NOT NULL REFERENCES crm.plan,
    status           text NOT NULL CHECK (status IN ('active', 'paused', 'cancelled')),
    started_on       date NOT NULL,
    renews_on        date,
    version          bigint NOT NULL DEFAULT 1
);
CREATE INDEX subscription_profile_idx ON crm.subscription (profile_id);
CREATE INDEX subscription_plan_idx ON crm.subscription (plan_id, status);

-- Row bookkeeping: every UPDATE bumps version, and updated_at unless the statement set it
-- (so the consent history records when a change happened, not when the row was created).
CREATE FUNCTION crm.bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END $$;

CREATE FUNCTION crm.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER profile_version BEFORE UPDATE ON crm.profile FOR EACH ROW EXECUTE FUNCTION crm.bump_version();
CREATE TRIGGER product_version BEFORE UPDATE ON crm.product FOR EACH ROW EXECUTE FUNCTION crm.bump_version();
CREATE TRIGGER inventory_version BEFORE UPDATE ON crm.inventory FOR EACH ROW EXECUTE FUNCTION crm.bump_version();
CREATE TRIGGER booking_version BEFORE UPDATE ON crm.booking FOR EACH ROW EXECUTE FUNCTION crm.bump_version();
CREATE TRIGGER plan_version BEFORE UPDATE ON crm.plan FOR EACH ROW EXECUTE FUNCTION crm.bump_version();
CREATE TRIGGER subscription_version BEFORE UPDATE ON crm.subscription FOR EACH ROW EXECUTE FUNCTION crm.bump_version();
CREATE TRIGGER profile_updated_at BEFORE UPDATE ON crm.profile FOR EACH ROW EXECUTE FUNCTION crm.touch_updated_at();
CREATE TRIGGER consent_updated_at BEFORE UPDATE ON crm.consent FOR EACH ROW EXECUTE FUNCTION crm.touch_updated_at();
CREATE TRIGGER inventory_updated_at BEFORE UPDATE ON crm.inventory FOR EACH ROW EXECUTE FUNCTION crm.touch_updated_at();

-- ---------------------------------------------------------------------------------------
-- The orchestrator's tables
-- ---------------------------------------------------------------------------------------

-- One row per Airflow DAG run of a campaign. run_key keeps the ledger's keys small.
CREATE TABLE campaign.run (
    run_key          bigserial PRIMARY KEY,
    campaign_id      text NOT NULL,
    dag_run_id       text NOT NULL,
    logical_date     timestamptz,
    params           jsonb NOT NULL DEFAULT '{}',
    status           text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
    audience_size    integer,
    evaluated_at     timestamptz,   -- set once: the audience is frozen for the run from then on
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    UNIQUE (campaign_id, dag_run_id)
);
CREATE INDEX run_campaign_idx ON campaign.run (campaign_id, started_at DESC);

-- The audience as evaluated for a run: a frozen snapshot, so a retried or cleared task
-- works on the same members the run started with.
CREATE TABLE campaign.audience_member (
    run_key     bigint NOT NULL REFERENCES campaign.run ON DELETE CASCADE,
    profile_id  bigint NOT NULL,
    entity_key  text NOT NULL DEFAULT '',
    PRIMARY KEY (run_key, profile_id, entity_key)
);

-- When a step's targets were filtered: done once per run and step, like the evaluation.
CREATE TABLE campaign.run_step (
    run_key      bigint NOT NULL REFERENCES campaign.run ON DELETE CASCADE,
    step_id      text NOT NULL,
    channel      text NOT NULL,
    sendable     integer NOT NULL,
    filtered_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_key, step_id)
);

-- The message ledger and communication history: one row per planned message, keyed by
-- (run, step, profile, entity). Excluded members keep a row with their reason; sendable
-- ones get a dense seq so batches are seq ranges. Status moves
-- pending -> sending -> sent | failed, and a send lost in a crash becomes 'uncertain'.
CREATE TABLE campaign.message (
    run_key              bigint NOT NULL REFERENCES campaign.run ON DELETE CASCADE,
    step_id              text NOT NULL,
    profile_id           bigint NOT NULL,
    entity_key           text NOT NULL DEFAULT '',
    campaign_id          text NOT NULL,
    channel              text NOT NULL,
    purpose              text NOT NULL CHECK (purpose IN ('marketing', 'transactional')),
    seq                  integer,
    address              text,
    status               text NOT NULL
        CHECK (status IN ('excluded', 'pending', 'sending', 'sent', 'failed', 'uncertain')),
    reason               text,
    error                text,
    provider_message_id  text,
    attempts             smallint NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL DEFAULT now(),
    claimed_at           timestamptz,
    sent_at              timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_key, step_id, profile_id, entity_key)
);
CREATE UNIQUE INDEX message_batch_idx ON campaign.message (run_key, step_id, seq) WHERE seq IS NOT NULL;
CREATE INDEX message_history_idx ON campaign.message (profile_id, channel, sent_at) WHERE status = 'sent';
CREATE INDEX message_provider_id_idx ON campaign.message (provider_message_id)
    WHERE provider_message_id IS NOT NULL;

-- The report of a run, per step: what the finalize task computed from the ledger.
CREATE TABLE campaign.step_report (
    run_key      bigint NOT NULL REFERENCES campaign.run ON DELETE CASCADE,
    step_id      text NOT NULL,
    channel      text NOT NULL,
    targeted     integer NOT NULL,
    excluded     jsonb NOT NULL,     -- {"opted_out": 12, "missing_address": 3, ...}
    sent         integer NOT NULL,
    failed       integer NOT NULL,
    uncertain    integer NOT NULL,
    pending      integer NOT NULL,   -- not sent because a batch never completed
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_key, step_id)
);
