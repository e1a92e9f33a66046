-- Why each member of a run's audience gets a step's message or not: one row per member
-- (profile, entity) with its address and final_reason, NULL when it is sendable. Excluded
-- members carry the first reason that applies, in this order:
--   holdout (the control group, recorded for lift), condition_not_met (the step's `when`,
--   see run/journey.py), missing_address, the channel's address
--   checks (invalid_address, …), opted_out, no_consent, suppressed, duplicate_address,
--   max_messages_per_profile
-- One source of truth: target_step.sql writes these rows to the ledger and
-- count_targets.sql counts them by reason (``campaigns calculate``), so a calculation
-- reports exactly what a run would record.
-- The channel's address expressions and checks are composed in from channels/registry.py,
-- who enters the step and its conditions (`when`) from run/journey.py
-- (the project's own SQL, never user input); values are bound parameters.
WITH member AS (
    SELECT m.profile_id,
           m.entity_key,
           {address} AS address,
           {normalized} AS normalized,
           {check_reason} AS check_reason,
           c.status AS consent,
           m.held_out,
           {condition} AS condition_met
    FROM ({members}) AS m
    JOIN crm.profile p ON p.profile_id = m.profile_id
    LEFT JOIN crm.consent c ON c.profile_id = m.profile_id AND c.channel = %(consent_channel)s
    -- OFFSET 0: each member's columns are computed once. Merged into the query above, every
    -- use of a column repeats its expression (the address checks' regular expressions, the
    -- step's conditions) wherever the reason's CASE names it.
    OFFSET 0
),
-- Read twice (the shared addresses below, then every member), so computed once and kept.
reasoned AS (
    SELECT member.profile_id, member.entity_key, member.address, member.normalized,
           CASE
               WHEN held_out THEN 'holdout'
               WHEN NOT condition_met THEN 'condition_not_met'
               WHEN address IS NULL THEN 'missing_address'
               WHEN check_reason IS NOT NULL THEN check_reason
               WHEN %(needs_consent)s AND consent = 'opted_out' THEN 'opted_out'
               WHEN %(needs_opt_in)s AND consent IS DISTINCT FROM 'opted_in' THEN 'no_consent'
               WHEN EXISTS (
                   SELECT 1 FROM crm.suppression s
                   WHERE s.channel = %(suppression_channel)s AND s.address = member.normalized
                     AND (%(needs_consent)s OR s.reason IN ('hard_bounce', 'complaint', 'invalid'))
               ) THEN 'suppressed'
           END AS reason
    FROM member
),
-- Two profiles sharing an address: the lowest profile id keeps it. These are the addresses
-- more than one sendable profile has, each with its keeper, found by hashing (a window over
-- the address sorted every member by it, a second sort beside the seq's). A sendable member
-- has an address, so a normalized one: no NULL to match here.
shared AS (
    SELECT normalized, min(profile_id) AS keeper
    FROM reasoned
    WHERE reason IS NULL
    GROUP BY normalized
    HAVING min(profile_id) <> max(profile_id)
),
deduplicated AS (
    -- With one message per entity, a profile gets at most %(max_per_profile)s of them (lowest
    -- entity keys first): the running count of its sendable members by entity key.
    SELECT reasoned.profile_id, reasoned.entity_key, reasoned.address,
           CASE
               WHEN reason IS NULL AND reasoned.profile_id > shared.keeper THEN 'duplicate_address'
               WHEN reason IS NULL AND %(max_per_profile)s::integer IS NOT NULL
                AND count(*) FILTER (WHERE reason IS NULL) OVER (
                        PARTITION BY reasoned.profile_id ORDER BY reasoned.entity_key ROWS UNBOUNDED PRECEDING
                    ) > %(max_per_profile)s::integer
               THEN 'max_messages_per_profile'
               ELSE reason
           END AS final_reason
    FROM reasoned
    LEFT JOIN shared ON shared.normalized = reasoned.normalized
)
SELECT profile_id, entity_key, address, final_reason
FROM deduplicated
