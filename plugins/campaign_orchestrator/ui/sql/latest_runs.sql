-- The latest run of each campaign in %(campaign_ids)s, with the totals its finalize task
-- stored (NULL while the run is still going). One index probe per campaign.
SELECT c.campaign_id, r.run_key, r.dag_run_id, r.status, r.audience_size, r.started_at, r.finished_at,
       t.targeted, t.sent, t.failed
FROM unnest(%(campaign_ids)s::text[]) AS c (campaign_id)
CROSS JOIN LATERAL (
    SELECT run_key, dag_run_id, status, audience_size, started_at, finished_at
    FROM campaign.run
    WHERE campaign_id = c.campaign_id
    ORDER BY started_at DESC
    LIMIT 1
) AS r
LEFT JOIN LATERAL (
    SELECT sum(targeted)::bigint AS targeted, sum(sent)::bigint AS sent,
           sum(failed + uncertain)::bigint AS failed
    FROM campaign.step_report
    WHERE run_key = r.run_key
    HAVING count(*) > 0
) AS t ON true
