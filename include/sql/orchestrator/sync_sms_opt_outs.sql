-- SMS consent from the SNS opt-out list: profiles whose normalized phone number is on it
-- become opted out (source 'sns_opt_out'). One statement for the whole list, bound as an
-- array; profiles already opted out are left as they are, so the consent history records
-- only changes. The placeholder below is the sms channel's normalized address of profile p
-- (channels/registry.py).
INSERT INTO crm.consent AS c (profile_id, channel, status, source)
SELECT DISTINCT p.profile_id, 'sms', 'opted_out', 'sns_opt_out'
FROM crm.profile p
JOIN unnest(%(numbers)s::text[]) AS o(phone) ON {normalized} = o.phone
ON CONFLICT (profile_id, channel) DO UPDATE
    SET status = excluded.status, source = excluded.source
    WHERE c.status <> 'opted_out'
