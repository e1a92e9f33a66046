-- A load's outcome, written in the transaction that changed the target (or, for a failed
-- load, after its rollback).
UPDATE ingest.load SET
    status = %(status)s, sha256 = %(sha256)s, rows_read = %(rows_read)s, inserted = %(inserted)s,
    updated = %(updated)s, unchanged = %(unchanged)s, deleted = %(deleted)s, rejected = %(rejected)s,
    duplicates = %(duplicates)s, data_as_of = %(data_as_of)s, watermark = %(watermark)s,
    warnings = %(warnings)s, error = %(error)s, finished_at = now()
WHERE load_id = %(load_id)s
