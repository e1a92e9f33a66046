-- Saved audiences: named, versioned snapshots of an evaluated audience (AJO's "save
-- audience" can only overwrite). A campaign reads the latest version or a pinned one.
CREATE TABLE campaign.saved_audience (
    saved_id           bigserial PRIMARY KEY,
    name               text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    version            integer NOT NULL,
    size               integer NOT NULL,
    source_campaign    text NOT NULL,
    source_run_key     bigint REFERENCES campaign.run ON DELETE SET NULL,
    source_dag_run_id  text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz,     -- NULL: kept until deleted
    UNIQUE (name, version),
    UNIQUE (name, source_campaign, source_dag_run_id)   -- one save per run, however often retried
);

CREATE TABLE campaign.saved_audience_member (
    saved_id    bigint NOT NULL REFERENCES campaign.saved_audience ON DELETE CASCADE,
    profile_id  bigint NOT NULL,
    entity_key  text NOT NULL DEFAULT '',
    PRIMARY KEY (saved_id, profile_id, entity_key)
);

-- The saved_id of a name's version (NULL: the latest). Raises, naming the audience, when there
-- is none, so a campaign reading it fails clearly instead of targeting nobody.
CREATE FUNCTION campaign.saved_audience_id(audience_name text, wanted_version integer)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    found bigint;
BEGIN
    SELECT saved_id INTO found FROM campaign.saved_audience
    WHERE name = audience_name AND (wanted_version IS NULL OR version = wanted_version)
      AND (expires_at IS NULL OR expires_at > now())
    ORDER BY version DESC LIMIT 1;
    IF found IS NULL THEN
        RAISE EXCEPTION 'no saved audience % version %', audience_name, coalesce(wanted_version::text, 'latest')
            USING HINT = 'campaigns audiences lists the saved audiences and their versions';
    END IF;
    RETURN found;
END $$;
