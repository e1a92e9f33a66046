-- Values of one column that are not valid input for the target's type, found set-based
-- (pg_input_is_valid on PostgreSQL 16+, ingest.input_is_valid on 15), for records not
-- rejected already.
INSERT INTO ingest_reject (line, kind, reason)
SELECT s._line, 'invalid_value',
       format('%%s: %%s is not a valid %%s', %(column)s::text, quote_literal(left({value}, 80)), %(type)s::text)
FROM ingest_stage s
WHERE {filter} AND nullif({value}, '') IS NOT NULL AND NOT {is_valid}({value}, %(type)s)
