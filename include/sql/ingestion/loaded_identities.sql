-- Which of these files (url, identity) a source has loaded (or skipped) already.
SELECT l.url, l.identity FROM ingest.load l
JOIN unnest(%(urls)s::text[], %(identities)s::text[]) AS f(url, identity) USING (url, identity)
WHERE l.source_id = %(source_id)s AND l.status IN ('succeeded', 'skipped')
