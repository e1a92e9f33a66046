-- Whether the store has the delivery feedback table yet (added by a later migration).
SELECT to_regclass('campaign.delivery_event') IS NOT NULL
