-- Exactly the profiles listed in %(profile_ids)s: for on-demand sends to a known set
-- (a support escalation, a seed list of real customers) and for tests.
-- Parameters (audience.params): profile_ids, a list of profile ids.
SELECT p.profile_id
FROM crm.profile AS p
WHERE p.profile_id = ANY(%(profile_ids)s::bigint[])
