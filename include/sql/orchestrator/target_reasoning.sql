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
),
reasoned AS (
    SELECT member.*,
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
deduplicated AS (
    -- Two profiles sharing an address: the lowest profile id keeps it. With one message per
    -- entity, a profile gets at most %(max_per_profile)s of them (lowest entity keys first).
    SELECT reasoned.*,
           CASE
               WHEN reason IS NULL
                AND dense_rank() OVER (PARTITION BY reason IS NULL, normalized ORDER BY profile_id) > 1
               THEN 'duplicate_address'
               WHEN reason IS NULL AND %(max_per_profile)s::integer IS NOT NULL
                AND row_number() OVER (PARTITION BY reason IS NULL, profile_id ORDER BY entity_key)
                    > %(max_per_profile)s::integer
               THEN 'max_messages_per_profile'
               ELSE reason
           END AS final_reason
    FROM reasoned
)
SELECT profile_id, entity_key, address, final_reason
FROM deduplicated
