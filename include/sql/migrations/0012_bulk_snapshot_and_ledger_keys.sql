-- The audience snapshot and the ledger are written a million rows at a time, by one
-- INSERT … SELECT per run (evaluate_audience.sql) and per step (target_step.sql). Measured
-- at 1,000,000 members (bench/bench_run.py, baselines audience_pk_fk and ledger_fk), most
-- of the evaluation and a fifth of the targeting was not the insert itself:
--
-- - The foreign keys to campaign.run were checked row by row: one lookup of the same run row
--   per inserted row (2.9 s of the evaluation's 5.2 s). Both inserts take run_key from a run
--   row they have just read and hold locked (run/audience.py locks it FOR NO KEY UPDATE,
--   run/targeting.py FOR KEY SHARE, the lock the key's check took), so the check can never
--   fail there. What ON DELETE CASCADE did is kept by the triggers below: deleting runs
--   deletes their snapshot and ledger rows in the same statement, and TRUNCATE of
--   campaign.run (… CASCADE) empties both tables, as the foreign keys made it do.
--
-- - The snapshot's primary key (run_key, profile_id, entity_key) was one B-tree insertion per
--   member (0.7 s). A run's members are read whole, by run_key (targeting, journeys, counts,
--   saved audiences, waits), and rows are appended run after run, so a BRIN index on run_key
--   finds a run's pages for almost no cost per inserted row. The only lookups by profile are
--   the entities of a chunk's profiles (enrich_entities_of_profiles.sql, for one message per
--   profile listing its entities): the B-tree below keeps those, and the uniqueness of
--   (run, profile, entity), for the rows that have an entity. Profile rows (entity_key '')
--   have nothing to look up; the evaluation makes them one per profile (its DISTINCT, or an
--   audience compiled unique; split_draft.sql's DISTINCT), and the ledger's primary key
--   would refuse a doubled member.
ALTER TABLE campaign.audience_member DROP CONSTRAINT audience_member_run_key_fkey;
ALTER TABLE campaign.message DROP CONSTRAINT message_run_key_fkey;

ALTER TABLE campaign.audience_member DROP CONSTRAINT audience_member_pkey;
-- autosummarize: the page ranges a run fills are summarized by autovacuum soon after (by
-- VACUUM where autovacuum is off), so reading another run skips them. Ranges not yet
-- summarized are always read: slower, never wrong.
CREATE INDEX audience_member_run_idx ON campaign.audience_member USING brin (run_key)
    WITH (autosummarize = on);
CREATE UNIQUE INDEX audience_member_entity_idx ON campaign.audience_member (run_key, profile_id, entity_key)
    WHERE entity_key <> '';

-- ON DELETE CASCADE, once per statement instead of once per row.
CREATE FUNCTION campaign.delete_run_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM campaign.message WHERE run_key IN (SELECT run_key FROM deleted_run);
    DELETE FROM campaign.audience_member WHERE run_key IN (SELECT run_key FROM deleted_run);
    RETURN NULL;
END
$$;
CREATE TRIGGER run_delete_rows AFTER DELETE ON campaign.run
    REFERENCING OLD TABLE AS deleted_run
    FOR EACH STATEMENT EXECUTE FUNCTION campaign.delete_run_rows();

-- TRUNCATE … CASCADE follows foreign keys only: without them it would leave these rows. A
-- table the same TRUNCATE already emptied is left alone (it cannot be truncated twice in
-- one statement: "being used by active queries").
CREATE FUNCTION campaign.truncate_run_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM campaign.message) THEN
        TRUNCATE campaign.message;
    END IF;
    IF EXISTS (SELECT FROM campaign.audience_member) THEN
        TRUNCATE campaign.audience_member;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER run_truncate_rows AFTER TRUNCATE ON campaign.run
    FOR EACH STATEMENT EXECUTE FUNCTION campaign.truncate_run_rows();
