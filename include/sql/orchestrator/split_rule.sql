-- Split by rules: one rule, run in rule order. The chosen SELECT (compiled by
-- audience/split.py) gives the candidates no earlier rule took that this rule takes: its
-- conditions, and for a top rule the first N by its order, ties by profile id.
INSERT INTO split_segment (profile_id, segment)
SELECT chosen.profile_id, %(segment)s
FROM ({chosen}) AS chosen
