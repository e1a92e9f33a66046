-- Shared send rates: one token bucket per provider connection ("email:smtp_default") and per
-- throttled step ("step:<campaign>:<step>"). Kept in the store so that every worker of every
-- running campaign draws from the same bucket without another service to run.
--
-- A sender creates its bucket on first use, and the latest configuration to start wins the
-- rate and burst. Tokens refill from the database server's clock only (clock_timestamp() in
-- the statement that takes them), so the workers' clocks never matter.
-- See plugins/campaign_orchestrator/run/throttle.py.
CREATE TABLE campaign.rate_bucket (
    name         text PRIMARY KEY,
    rate         double precision NOT NULL CHECK (rate > 0),    -- tokens (messages) per second
    burst        double precision NOT NULL CHECK (burst >= 1),  -- the most tokens the bucket holds
    tokens       double precision NOT NULL,                     -- available at refilled_at
    refilled_at  timestamptz NOT NULL,
    -- Tokens handed out by the latest take: UPDATE ... RETURNING sees only the new row, and
    -- this is how one statement both takes the tokens and tells the caller how many.
    last_grant   double precision NOT NULL DEFAULT 0,
    CONSTRAINT rate_bucket_tokens_in_range CHECK (tokens >= 0 AND tokens <= burst)
-- Every take rewrites the row: room on its page lets PostgreSQL do that in place (a HOT
-- update) instead of adding index entries for each version.
) WITH (fillfactor = 50);
