-- Upcoming trip reminder: travellers whose trip starts soon, for a "get ready" email with
-- trip tips.
--
-- A profile qualifies with a confirmed booking starting after today and at most
-- %(days_ahead)s days from today ("today" is the store's CURRENT_DATE), unless this campaign
-- (%(campaign_id)s) already sent it a message within that many days: the campaign runs
-- daily, and a trip stays in the window for a week. One message per profile, however
-- many trips it has in the window.
--
-- Consent, suppression and address checks are applied by the email step, not here.
--
-- Parameters (audience.params): days_ahead, campaign_id.
-- Returns: profile_id, once per profile.
SELECT DISTINCT b.profile_id
FROM crm.booking AS b
WHERE b.status = 'confirmed'
  AND b.starts_on > CURRENT_DATE
  AND b.starts_on <= CURRENT_DATE + %(days_ahead)s::integer
  AND NOT EXISTS (
      SELECT FROM campaign.message AS m
      WHERE m.profile_id = b.profile_id
        AND m.channel = 'email'
        AND m.status = 'sent'
        AND m.sent_at >= now() - make_interval(days => %(days_ahead)s::integer)
        AND m.campaign_id = %(campaign_id)s
  )
