-- Winter sale: customers worth a seasonal offer.
--
-- A profile qualifies with at least %(min_bookings)s booking(s) made within the last
-- %(lookback_days)s days that were not cancelled (confirmed, or completed for trips already
-- taken), or with an active subscription to any plan.
--
-- Consent, suppression and address checks are not repeated here: the email step applies
-- them (consent: opt_in) and reports each excluded profile with its reason.
--
-- Parameters (audience.params): min_bookings, lookback_days.
-- Returns: profile_id, once per profile.
SELECT b.profile_id
FROM crm.booking AS b
WHERE b.status IN ('confirmed', 'completed')
  AND b.booked_at >= now() - make_interval(days => %(lookback_days)s::integer)
GROUP BY b.profile_id
HAVING count(*) >= %(min_bookings)s::integer
UNION
SELECT s.profile_id
FROM crm.subscription AS s
WHERE s.status = 'active'
