-- Split by rules, last statement: freeze the run's snapshot from the draft, each member with
-- its profile's segment: the rule that took it, else the last rule's when that is a
-- catch-all (%(otherwise)s), else none. The held-out control group never has one.
INSERT INTO campaign.audience_member (run_key, profile_id, entity_key, held_out, segment)
SELECT %(run_key)s, draft.profile_id, draft.entity_key, draft.held_out,
       coalesce(split_segment.segment, CASE WHEN NOT draft.held_out THEN %(otherwise)s::text END)
FROM audience_draft AS draft
LEFT JOIN split_segment ON split_segment.profile_id = draft.profile_id
ON CONFLICT DO NOTHING
