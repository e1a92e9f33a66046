-- Freeze a run's audience: the campaign's SELECT (spliced in below) is evaluated
-- inside PostgreSQL straight into the snapshot. Values are bound parameters.
INSERT INTO campaign.audience_member (run_key, profile_id, entity_key)
SELECT DISTINCT %(run_key)s, audience.profile_id, {entity_key}
FROM ({audience}) AS audience
WHERE audience.profile_id IS NOT NULL
ON CONFLICT DO NOTHING
