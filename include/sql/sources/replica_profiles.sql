-- An example SQL source (dags/ingestion/README or the tests): profiles changed in another
-- database since the last load. %(watermark)s is the largest updated_at loaded so far (the
-- source's watermark.initial the first time); the rows are read with a server-side cursor.
SELECT id AS profile_id,
       email,
       given_name AS first_name,
       family_name AS last_name,
       upper(country) AS country_code,
       changed_at AS updated_at
FROM crm_profiles
WHERE changed_at > %(watermark)s::timestamptz
ORDER BY changed_at
