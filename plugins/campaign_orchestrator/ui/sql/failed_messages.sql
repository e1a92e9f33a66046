-- Messages of a run that failed or whose outcome is unknown, for the CSV download.
SELECT profile_id, entity_key, step_id, channel, address, status, reason, error, updated_at
FROM campaign.message
WHERE run_key = %(run_key)s AND status IN ('failed', 'uncertain')
ORDER BY step_id, profile_id, entity_key
