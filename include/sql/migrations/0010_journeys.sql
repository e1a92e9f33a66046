-- Multi-step campaigns (journeys): waits between steps and per-recipient send times.
--
-- A wait step records when the branch reached it and when it is due, once per run, so a
-- retried or resumed wait task keeps its original due time instead of starting over.
CREATE TABLE campaign.run_wait (
    run_key     bigint NOT NULL REFERENCES campaign.run ON DELETE CASCADE,
    step_id     text NOT NULL,
    entered_at  timestamptz NOT NULL DEFAULT now(),
    due_at      timestamptz NOT NULL,     -- the earliest moment any recipient may go on
    time_scale  double precision NOT NULL DEFAULT 1 CHECK (time_scale >= 0),
    PRIMARY KEY (run_key, step_id)
);

-- A message timed by a wait until a local time of day is not claimed before this moment
-- (each recipient's own 09:00, say); NULL: as soon as its batch runs.
ALTER TABLE campaign.message ADD COLUMN not_before timestamptz;

-- Conditions on earlier outcomes look up one profile's events of one step of one run.
CREATE INDEX delivery_event_recipient_idx ON campaign.delivery_event (run_key, step_id, profile_id, event_type);
