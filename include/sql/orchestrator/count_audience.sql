-- Members (rows) and distinct profiles of an audience SELECT, or of one of its blocks, for
-- `campaigns calculate`; nothing is written. Grouping by profile first lets PostgreSQL
-- hash (in parallel) where count(DISTINCT …) would sort.
SELECT coalesce(sum(per_profile.members), 0), count(per_profile.profile_id)
FROM (
    SELECT audience.profile_id, count(*) AS members
    FROM ({audience}) AS audience
    GROUP BY audience.profile_id
) AS per_profile
