-- Indexes for audiences built from entities, chosen from the plans of the demo campaigns
-- at 1M profiles and 5M bookings (bench/bench_preview.py; tests/integration/store/
-- test_audience_indexes.py checks the plans use them).
--
-- A block that changes dimension through bookings reads a few columns of many bookings:
-- low-stock products -> all their bookings (profile and booking id), or confirmed bookings
-- starting soon (profile and booking id). Fetching each booking's heap row was most of the
-- time (one random page read per booking); covering indexes let PostgreSQL answer from the
-- index alone (an index-only scan, once VACUUM has marked the pages all-visible, as
-- autovacuum does for a table at rest). They replace the narrower indexes of 0001.
--
-- Deliberately not added: an index on inventory levels (one row per product: a scan of it
-- is the right plan), on consent (its primary key is (profile_id, channel) already), and on
-- campaign.audience_member (run_key, segment) (its primary key starts with run_key; one more
-- index would slow every evaluation and turn segment updates into non-HOT updates).

-- Bookings by product, e.g. inventory -> product -> booking -> profile.
CREATE INDEX booking_product_covering_idx ON crm.booking (product_id, starts_on)
    INCLUDE (profile_id, booking_id);
DROP INDEX crm.booking_product_idx;

-- Confirmed bookings by start date, e.g. "starts within the next 45 days".
CREATE INDEX booking_upcoming_covering_idx ON crm.booking (starts_on)
    INCLUDE (profile_id, booking_id) WHERE status = 'confirmed';
DROP INDEX crm.booking_starts_idx;
