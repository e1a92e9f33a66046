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
-- were written), and lasts the window; the whole campaign's opens with its first step. The
-- whole campaign counts the frozen audience (campaign.audience_member), so members a segment
-- step never targeted are counted in their group too.
--
-- {conversions}, {who}, {when} and {amount} are the campaign's `conversion` table and columns,
-- composed as identifiers (the amount: NULL without an amount_column); values are bound.
WITH per_step AS MATERIALIZED (
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
),
whole AS (
    SELECT '' AS step_id, min(started_at) AS started_at FROM opens HAVING count(*) > 0
),
member AS (
    SELECT profile_id, bool_or(held_out) AS held_out
    FROM campaign.audience_member WHERE run_key = %(run_key)s GROUP BY profile_id
),
-- Only the conversions inside some step's window: the time column's index (if it has one)
-- finds them, and nothing below reads a conversion from before or long after the run.
conversion_in_windows AS MATERIALIZED (
    SELECT conversion.{who} AS profile_id, conversion.{when} AS converted_at, {amount} AS amount
    FROM {conversions} AS conversion
    WHERE conversion.{when} >= (SELECT started_at FROM whole)
      AND conversion.{when} < (SELECT max(started_at) FROM opens) + %(window)s
),
-- Who converted within each window (anyone: the joins below keep the recipients), and the
-- revenue of their conversions there.
converted_in_step AS (
    SELECT opens.step_id, conversion.profile_id, sum(conversion.amount) AS revenue
    FROM conversion_in_windows AS conversion
    JOIN opens ON conversion.converted_at >= opens.started_at
              AND conversion.converted_at < opens.started_at + %(window)s
    GROUP BY opens.step_id, conversion.profile_id
),
converted_in_campaign AS (
    SELECT conversion.profile_id, sum(conversion.amount) AS revenue
    FROM conversion_in_windows AS conversion, whole
    WHERE conversion.converted_at < whole.started_at + %(window)s
    GROUP BY conversion.profile_id
),
-- Per group: recipients, those sent a message, those the step's own condition turned away
-- (they leave the branch, so later steps' groups are no longer drawn alike when there are
-- any), converted recipients, and each recipient's revenue (0 without a conversion): sum,
-- mean and sample variance, which PostgreSQL computes from exact sums and sums of squares.
counted AS (
    SELECT per_step.step_id, per_step.held_out,
           count(*) AS recipients,
           count(*) FILTER (WHERE per_step.sent) AS sent,
           count(*) FILTER (WHERE per_step.turned_away) AS turned_away,
           count(converted.profile_id) AS converted,
           coalesce(sum(converted.revenue), 0) AS revenue,
           avg(coalesce(converted.revenue, 0)) AS revenue_mean,
           coalesce(var_samp(coalesce(converted.revenue, 0)), 0) AS revenue_variance
    FROM per_step
    LEFT JOIN converted_in_step AS converted
        ON converted.step_id = per_step.step_id AND converted.profile_id = per_step.profile_id
    GROUP BY per_step.step_id, per_step.held_out
    UNION ALL
    -- The whole campaign: every member of the frozen audience (sent is counted per step only).
    SELECT '', member.held_out,
           count(*), 0, 0,
           count(converted.profile_id),
           coalesce(sum(converted.revenue), 0),
           avg(coalesce(converted.revenue, 0)),
           coalesce(var_samp(coalesce(converted.revenue, 0)), 0)
    FROM member
    LEFT JOIN converted_in_campaign AS converted ON converted.profile_id = member.profile_id
    GROUP BY member.held_out
)
SELECT counted.step_id, counted.held_out, opening.started_at, opening.started_at + %(window)s AS closes_at,
       counted.recipients, counted.sent, counted.turned_away, counted.converted,
       counted.revenue, counted.revenue_mean, counted.revenue_variance, now() AS computed_at
FROM counted
JOIN (SELECT step_id, started_at FROM opens UNION ALL SELECT step_id, started_at FROM whole) AS opening
    ON opening.step_id = counted.step_id
ORDER BY counted.step_id, counted.held_out
