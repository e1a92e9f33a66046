-- One run, by key.
SELECT run_key, campaign_id, dag_run_id, status, audience_size, started_at, finished_at, evaluated_at
FROM campaign.run
WHERE run_key = %(run_key)s
