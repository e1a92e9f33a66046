-- A run's frozen audience counted by holdout and split segment, and in all (the grouping
-- set with both NULL and grouped = 3): members (rows) and distinct profiles.
SELECT grouping(held_out, segment) AS grouped, held_out, segment, count(*), count(DISTINCT profile_id)
FROM campaign.audience_member
WHERE run_key = %(run_key)s
GROUP BY GROUPING SETS ((), (held_out, segment))
