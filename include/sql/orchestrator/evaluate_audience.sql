-- Freeze a run's audience: the campaign's SELECT (spliced in below) is evaluated inside
-- PostgreSQL straight into the snapshot, one row per (profile, entity). The holdout flag
-- and split segment are drawn here by hashing the profile id, so they are stable for a
-- given salt and frozen with the run. Values are bound parameters.
-- No ON CONFLICT: the DISTINCT makes each (profile, entity) one row (held_out follows from
-- the profile), and audience.py holds the run's row locked while it evaluates, so a second
-- attempt waits and then finds the snapshot frozen. (Speculative insertion was a quarter of
-- this statement's time at 1,000,000 members.) An audience that audience/compile.py built
-- unique (AudienceQuery.unique) needs no DISTINCT, which is left out: at 1,000,000 profiles
-- its ordered read and comparisons took 1.1 s where a plain scan takes 0.6 s.
INSERT INTO campaign.audience_member (run_key, profile_id, entity_key, held_out, segment)
SELECT %(run_key)s, member.profile_id, member.entity_key, member.held_out,
       CASE WHEN NOT member.held_out THEN {segment} END
FROM (
    SELECT {distinct} audience.profile_id, {entity_key} AS entity_key, {held_out} AS held_out
    FROM ({audience}) AS audience
    WHERE audience.profile_id IS NOT NULL
) AS member
