-- Push endpoints the provider reported disabled or invalid: such a profile is excluded
-- (reason push_endpoint_disabled) until a new token is stored, instead of failing every run.
ALTER TABLE crm.profile
    ADD COLUMN push_disabled_at timestamptz,
    ADD COLUMN push_disabled_reason text;

-- A new token clears the mark.
CREATE FUNCTION crm.clear_push_disabled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.push_token IS DISTINCT FROM OLD.push_token
       AND NEW.push_disabled_at IS NOT DISTINCT FROM OLD.push_disabled_at THEN
        NEW.push_disabled_at := NULL;
        NEW.push_disabled_reason := NULL;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER profile_push_token_changed BEFORE UPDATE OF push_token ON crm.profile
    FOR EACH ROW EXECUTE FUNCTION crm.clear_push_disabled();

-- Billable units per message where a channel has them (SMS segments), for the run report.
ALTER TABLE campaign.message ADD COLUMN units smallint;
ALTER TABLE campaign.step_report ADD COLUMN units integer NOT NULL DEFAULT 0;
