-- Split by rules: the candidates (each non-held-out profile of the draft once) and the
-- profile -> segment table the rules fill, with fresh statistics so the rules' joins plan
-- on the real sizes.
CREATE TEMPORARY TABLE split_candidate ON COMMIT DROP AS
SELECT DISTINCT profile_id FROM audience_draft WHERE NOT held_out;
CREATE TEMPORARY TABLE split_segment (profile_id bigint PRIMARY KEY, segment text NOT NULL) ON COMMIT DROP;
ANALYZE audience_draft;
ANALYZE split_candidate;
