-- The lift of one run: for each step, and for the whole campaign (step_id ''), each group's
-- recipients (held out or treated), those who converted within the window, and the revenue of
-- their conversions. One row per (step, group); nothing per recipient leaves the database.
--
-- A recipient is a profile (a profile with several entities counts once: the holdout is drawn
-- per profile and a conversion belongs to the profile). Treated means every profile of the
-- step that is not held out, whatever happened to its message (intention to treat): sent,
-- excluded for consent or a condition, failed. Held-out rows are recorded before any other
-- reason is looked at (target_reasoning.sql), so counting only those sent would compare the
-- reachable with everyone.
--
-- The window opens for both groups at the same moment, the step's start (when its ledger rows
-- were written), and lasts %(window)s; the whole campaign's opens with its first step. The
-- whole campaign counts the frozen audience (campaign.audience_member), so members a segment
-- step never targeted are counted in their group too.
--
-- {conversions}, {who}, {when} and {amount} are the campaign's `conversion` table and columns,
-- composed as identifiers (the amount: NULL without an amount_column); values are bound.
WITH per_step AS (
    SELECT step_id, profile_id,
           bool_or(status = 'held_out') AS held_out,
           bool_or(status IN ('sent', 'rendered')) AS sent,
           bool_or(reason = 'condition_not_met') AS turned_away,
           min(created_at) AS targeted_at
    FROM campaign.message
    WHERE run_key = %(run_key)s
    GROUP BY step_id, profile_id
),
opens AS (
    SELECT step_id, min(targeted_at) AS started_at FROM per_step GROUP BY step_id
    UNION ALL
    SELECT '', min(targeted_at) FROM per_step HAVING count(*) > 0
),
recipient AS (
    SELECT step_id, profile_id, held_out, sent, turned_away FROM per_step
    UNION ALL
    SELECT '', member.profile_id, member.held_out, coalesce(reached.sent, false), false
    FROM (
        SELECT profile_id, bool_or(held_out) AS held_out
        FROM campaign.audience_member WHERE run_key = %(run_key)s GROUP BY profile_id
    ) AS member
    LEFT JOIN (SELECT profile_id, bool_or(sent) AS sent FROM per_step GROUP BY profile_id) AS reached
        ON reached.profile_id = member.profile_id
),
converted AS (
    SELECT recipient.step_id, recipient.profile_id, sum({amount}) AS revenue
    FROM recipient
    JOIN opens ON opens.step_id = recipient.step_id
    JOIN {conversions} AS conversion
        ON conversion.{who} = recipient.profile_id
       AND conversion.{when} >= opens.started_at
       AND conversion.{when} < opens.started_at + %(window)s
    GROUP BY recipient.step_id, recipient.profile_id
)
SELECT recipient.step_id,
       recipient.held_out,
       opens.started_at,
       opens.started_at + %(window)s AS closes_at,
       count(*) AS recipients,
       count(*) FILTER (WHERE recipient.sent) AS sent,
       -- Turned away by the step's own condition (they leave the branch: later steps' groups
       -- are no longer drawn alike when any were).
       count(*) FILTER (WHERE recipient.turned_away) AS turned_away,
       count(converted.profile_id) AS converted,
       coalesce(sum(converted.revenue), 0) AS revenue,
       -- Each recipient's revenue, 0 without a conversion: mean and sample variance, computed
       -- by PostgreSQL from exact sums and sums of squares (numeric).
       avg(coalesce(converted.revenue, 0)) AS revenue_mean,
       coalesce(var_samp(coalesce(converted.revenue, 0)), 0) AS revenue_variance,
       now() AS computed_at
FROM recipient
JOIN opens ON opens.step_id = recipient.step_id
LEFT JOIN converted ON converted.step_id = recipient.step_id AND converted.profile_id = recipient.profile_id
GROUP BY recipient.step_id, recipient.held_out, opens.started_at
ORDER BY recipient.step_id, recipient.held_out
