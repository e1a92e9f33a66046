-- Holdout (control group) and split segments are drawn when the audience is evaluated and
-- frozen with it; held-out members get a ledger row per step with status 'held_out', so a
-- report can compare them with those who got the message.
ALTER TABLE campaign.audience_member
    ADD COLUMN held_out boolean NOT NULL DEFAULT false,
    ADD COLUMN segment text;

ALTER TABLE campaign.message DROP CONSTRAINT message_status_check;
ALTER TABLE campaign.message ADD CONSTRAINT message_status_check
    CHECK (status IN ('excluded', 'held_out', 'pending', 'sending', 'sent', 'failed', 'uncertain'));

ALTER TABLE campaign.step_report ADD COLUMN held_out integer NOT NULL DEFAULT 0;
