-- A dry run renders every message to files and sends nothing: its ledger rows end as
-- 'rendered', never 'sent', so they never count as communication history.
ALTER TABLE campaign.message DROP CONSTRAINT message_status_check;
ALTER TABLE campaign.message ADD CONSTRAINT message_status_check
    CHECK (status IN ('excluded', 'held_out', 'pending', 'sending', 'sent', 'rendered', 'failed', 'uncertain'));
ALTER TABLE campaign.step_report ADD COLUMN rendered integer NOT NULL DEFAULT 0;
