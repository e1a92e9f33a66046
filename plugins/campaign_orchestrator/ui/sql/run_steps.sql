-- The steps a run has targeted so far, in the order it targeted them.
SELECT step_id, channel
FROM campaign.run_step
WHERE run_key = %(run_key)s
ORDER BY filtered_at, step_id
