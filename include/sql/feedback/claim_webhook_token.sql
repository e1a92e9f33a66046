-- A webhook request's one-time token (Mailgun), claimed in the transaction that stores its
-- events: no row back means the token was seen before (a replay). Tokens older than twice
-- the accepted signature age can never verify again and are deleted on the way.
WITH expired AS (
    DELETE FROM campaign.webhook_token
    WHERE provider = %(provider)s AND received_at < now() - make_interval(secs => 2 * %(max_age)s)
)
INSERT INTO campaign.webhook_token (provider, token)
VALUES (%(provider)s, %(token)s)
ON CONFLICT (provider, token) DO NOTHING
RETURNING token
