-- Split by rules, first statement (audience/split.py): the run's audience is evaluated once
-- into a temporary draft, and its non-held-out profiles become the rules' candidates, so
-- the rules choose among them before anything is frozen. The campaign's SELECT is spliced
-- in as in evaluate_audience.sql; values are bound. Temporary tables end with the evaluation.
CREATE TEMPORARY TABLE audience_draft ON COMMIT DROP AS
SELECT DISTINCT audience.profile_id::bigint AS profile_id, {entity_key} AS entity_key, {held_out} AS held_out
FROM ({audience}) AS audience
WHERE audience.profile_id IS NOT NULL
