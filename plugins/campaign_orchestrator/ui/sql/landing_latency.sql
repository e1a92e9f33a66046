-- For the latest run of each campaign: when it started, and when the newest file of the
-- tables it waits on (on_data, requires_fresh) had landed in storage before that start.
WITH wanted AS (
    SELECT * FROM unnest(%(campaign_ids)s::text[], %(tables)s::text[]) AS w (campaign_id, table_name)
),
runs AS (
    SELECT DISTINCT ON (campaign_id) campaign_id, started_at
    FROM campaign.run
    WHERE campaign_id IN (SELECT campaign_id FROM wanted)
    ORDER BY campaign_id, started_at DESC
)
SELECT r.campaign_id, r.started_at, max(l.landed_at)
FROM runs r
JOIN wanted w USING (campaign_id)
CROSS JOIN LATERAL (
    SELECT landed_at FROM ingest.load
    WHERE target_table = w.table_name AND status = 'succeeded' AND landed_at IS NOT NULL
      AND finished_at <= r.started_at
    ORDER BY finished_at DESC
    LIMIT 1
) l
GROUP BY r.campaign_id, r.started_at
