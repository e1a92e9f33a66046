-- Three things a newcomer tripped on (see README "Your own campaign, step by step").
--
-- 1. A scheduled slot is sent at most once. Airflow drops and recreates a DAG run under a
--    new run id when `airflow dags test <dag> <date>` is repeated, or a run is deleted and
--    created again; keyed by run id alone, the recreated run was a new send to everyone.
--    A run now also has its slot (the logical date) and a generation: the run that
--    registers for a slot that already has one adopts it (campaign/run/runs.py) and carries
--    on from its ledger; only the trigger parameter `resend_slot` starts a new generation.
ALTER TABLE campaign.run ADD COLUMN slot_generation integer NOT NULL DEFAULT 0;
ALTER TABLE campaign.run ADD COLUMN replaced_run_ids text[] NOT NULL DEFAULT '{}';
-- Stores that already hold recreated runs of one slot keep them, numbered in run order.
UPDATE campaign.run AS r SET slot_generation = numbered.generation
FROM (
    SELECT run_key, row_number() OVER (PARTITION BY campaign_id, logical_date ORDER BY run_key) - 1 AS generation
    FROM campaign.run WHERE logical_date IS NOT NULL
) AS numbered
WHERE numbered.run_key = r.run_key AND numbered.generation > 0;
CREATE UNIQUE INDEX run_slot_idx ON campaign.run (campaign_id, logical_date, slot_generation)
    WHERE logical_date IS NOT NULL;

-- 2. Date windows of declarative audience conditions, the same both ways and explicit.
--    `within_next_days: N` / `within_last_days: N` compile to these functions; PostgreSQL
--    picks the overload by the column's type, and inlines them (single-expression SQL
--    functions), so an index on the column still serves the condition.
--    - date columns: calendar days in the campaign's time zone, today included:
--      next N = today .. today + N, last N = today - N .. today.
--    - timestamp columns: rolling, from now: next N = now .. now + N x 24 h,
--      last N = now - N x 24 h .. now (a timestamp without time zone is read in the
--      campaign's time zone).
--    - `{within_next_days: N, calendar: true}` asks for calendar days on a timestamp too:
--      from the start of today to the end of day today + N, in the campaign's time zone.
CREATE FUNCTION campaign.within_next_days(value date, days integer, tz text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT value BETWEEN (now() AT TIME ZONE tz)::date AND (now() AT TIME ZONE tz)::date + days $$;
CREATE FUNCTION campaign.within_last_days(value date, days integer, tz text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT value BETWEEN (now() AT TIME ZONE tz)::date - days AND (now() AT TIME ZONE tz)::date $$;

CREATE FUNCTION campaign.within_next_days(value timestamptz, days integer, tz text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT value BETWEEN now() AND now() + make_interval(days => days) $$;
CREATE FUNCTION campaign.within_last_days(value timestamptz, days integer, tz text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT value BETWEEN now() - make_interval(days => days) AND now() $$;

CREATE FUNCTION campaign.within_next_days(value timestamp, days integer, tz text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT value BETWEEN (now() AT TIME ZONE tz) AND (now() AT TIME ZONE tz) + make_interval(days => days) $$;
CREATE FUNCTION campaign.within_last_days(value timestamp, days integer, tz text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT value BETWEEN (now() AT TIME ZONE tz) - make_interval(days => days) AND (now() AT TIME ZONE tz) $$;

CREATE FUNCTION campaign.within_next_calendar_days(value timestamptz, days integer, tz text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT value >= ((now() AT TIME ZONE tz)::date)::timestamp AT TIME ZONE tz
         AND value < ((now() AT TIME ZONE tz)::date + days + 1)::timestamp AT TIME ZONE tz $$;
CREATE FUNCTION campaign.within_last_calendar_days(value timestamptz, days integer, tz text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT value >= ((now() AT TIME ZONE tz)::date - days)::timestamp AT TIME ZONE tz
         AND value < ((now() AT TIME ZONE tz)::date + 1)::timestamp AT TIME ZONE tz $$;
CREATE FUNCTION campaign.within_next_calendar_days(value timestamp, days integer, tz text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT value >= ((now() AT TIME ZONE tz)::date)::timestamp
         AND value < ((now() AT TIME ZONE tz)::date + days + 1)::timestamp $$;
CREATE FUNCTION campaign.within_last_calendar_days(value timestamp, days integer, tz text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT value >= ((now() AT TIME ZONE tz)::date - days)::timestamp
         AND value < ((now() AT TIME ZONE tz)::date + 1)::timestamp $$;
CREATE FUNCTION campaign.within_next_calendar_days(value date, days integer, tz text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT campaign.within_next_days(value, days, tz) $$;
CREATE FUNCTION campaign.within_last_calendar_days(value date, days integer, tz text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT campaign.within_last_days(value, days, tz) $$;

-- 3. What `campaigns store demo-data` generated, so it can tell a demo store from one
--    holding anyone's real data, and refuse to replace the latter (store/demo_data.py).
CREATE TABLE campaign.demo_data_stamp (
    generated_at  timestamptz NOT NULL DEFAULT now(),
    profiles      integer NOT NULL,
    seed          integer NOT NULL,
    anchor        date NOT NULL,
    row_counts    jsonb NOT NULL,
    -- sum(version) per versioned crm table: any update since bumps it (crm.bump_version).
    version_sums  jsonb NOT NULL
);
