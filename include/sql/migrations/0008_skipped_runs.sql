-- A scheduled run that starts too late (e.g. the DAG was unpaused days after its slot) is
-- recorded as skipped: nothing was sent, by decision.
ALTER TABLE campaign.run DROP CONSTRAINT run_status_check;
ALTER TABLE campaign.run ADD CONSTRAINT run_status_check
    CHECK (status IN ('running', 'succeeded', 'failed', 'skipped'));
