-- The most recent runs of one campaign, newest first, with their stored report totals.
SELECT r.run_key, r.dag_run_id, r.status, r.audience_size, r.started_at, r.finished_at,
       t.targeted, t.sent, t.failed
FROM campaign.run AS r
LEFT JOIN LATERAL (
    SELECT sum(targeted)::bigint AS targeted, sum(sent)::bigint AS sent,
           sum(failed + uncertain)::bigint AS failed
    FROM campaign.step_report
    WHERE run_key = r.run_key
    HAVING count(*) > 0
) AS t ON true
WHERE r.campaign_id = %(campaign_id)s
ORDER BY r.started_at DESC
LIMIT %(limit)s
