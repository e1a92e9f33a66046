-- Provider feedback of a run: how many of its messages were delivered, opened or clicked,
-- per step. A message counts once per event type however many events it produced; opens and
-- clicks no person made (machine: a privacy proxy, a scanner) do not count.
SELECT e.step_id, e.event_type, count(DISTINCT (e.profile_id, e.entity_key))::bigint
FROM campaign.delivery_event AS e
WHERE e.run_key = %(run_key)s AND e.event_type = ANY(%(event_types)s::text[]) AND e.machine IS NULL
GROUP BY e.step_id, e.event_type
