-- Deterministic demo data for the campaign store: profiles, consent, suppression, products,
-- inventory, plans, subscriptions and bookings, at any scale.
--
-- Run by campaign_orchestrator.store.demo_data.generate_demo_data(), one "-- step:" at a
-- time inside one transaction (so a failed run leaves the previous data in place), after
-- store/demo_data.py has emptied the tables it owns (and checked it may: it never empties
-- a table it does not own, nor a store holding data it did not generate).
-- Parameters (bound by the driver, never formatted in):
--   %(profiles)s   number of profiles N; ids are 1..N
--   %(products)s   number of products
--   %(seed)s       any value in [0, 2^31); the same seed gives the same rows
--   %(anchor)s     the date "today" is for the data: bookings start from anchor - 60 days to
--                  anchor + 120 days, nothing is created after it
--   %(anchor_ts)s  midnight UTC of the anchor, as a timestamptz
--   %(booking_scale)s      NULL, or a factor applied to each profile's number of bookings
--   %(booking_id_stride)s  booking ids are profile_id * stride + n (10 unless scaled past 9)
--
-- Every "random" choice is a hash of (row key, salt) under the seed, never random(), and ids
-- are computed, never numbered in scan order: the same parameters give the same rows,
-- whatever the plan, the scan order or the session settings. (One exception: the serial
-- consent_history.history_id follows the order the consent rows were inserted in.)
-- Choices are drawn "per mille" (0..999) and compared with thresholds, so a comment like
-- "draw < 20" reads as "2 in 100 rows". Each table uses its own range of salts.
-- No percent sign may appear in this file outside the parameters: the driver parses it.

-- step: setup
SET LOCAL synchronous_commit = off;
SET LOCAL work_mem = '64MB';
-- The statements are simple scans; compiling them costs more than it saves.
SET LOCAL jit = off;
-- A draw in [0, n): a hash of (key, salt) under the seed. Inlined by the planner.
CREATE OR REPLACE FUNCTION pg_temp.demo_draw(seed bigint, key bigint, salt integer, n bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT mod(hashint8extended(key * 64 + salt, seed) & 2147483647, n) $$;
-- A draw in [0, 1).
CREATE OR REPLACE FUNCTION pg_temp.demo_unit(seed bigint, key bigint, salt integer)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (hashint8extended(key * 64 + salt, seed) & 9007199254740991)::double precision / 9007199254740992 $$;
-- 16 hex digits, for device tokens.
CREATE OR REPLACE FUNCTION pg_temp.demo_hex(seed bigint, key bigint, salt integer)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT lpad(to_hex(hashint8extended(key * 64 + salt, seed)), 16, '0') $$;

-- step: defer_constraints
-- Bulk loading as the PostgreSQL manual advises ("Populating a Database"): the foreign keys
-- and secondary indexes of the filled tables are dropped here and re-created from their
-- saved definitions by restore_constraints, which checks each key and builds each index in
-- one pass instead of once per inserted row. Primary keys and unique constraints stay. All
-- of it happens in the generator's transaction: an error brings every one of them back.
CREATE TEMP TABLE demo_deferred ON COMMIT DROP AS
SELECT 'foreign key' AS kind,
       c.conname::text AS name,
       'ALTER TABLE ' || c.conrelid::regclass::text || ' DROP CONSTRAINT ' || quote_ident(c.conname) AS drop_ddl,
       'ALTER TABLE ' || c.conrelid::regclass::text || ' ADD CONSTRAINT ' || quote_ident(c.conname) || ' '
           || pg_get_constraintdef(c.oid) AS create_ddl
FROM pg_constraint AS c
WHERE c.contype = 'f'
  AND c.conrelid = ANY (ARRAY['crm.profile', 'crm.consent', 'crm.consent_history', 'crm.suppression', 'crm.plan', 'crm.product',
                            'crm.inventory', 'crm.subscription', 'crm.booking']::regclass[])
UNION ALL
SELECT 'index',
       i.indexrelid::regclass::text,
       'DROP INDEX ' || i.indexrelid::regclass::text,
       pg_get_indexdef(i.indexrelid)
FROM pg_index AS i
WHERE i.indrelid = ANY (ARRAY['crm.profile', 'crm.consent', 'crm.consent_history', 'crm.suppression', 'crm.plan', 'crm.product',
                            'crm.inventory', 'crm.subscription', 'crm.booking']::regclass[])
  AND NOT EXISTS (SELECT FROM pg_constraint AS c WHERE c.conindid = i.indexrelid);
DO $$
DECLARE
    deferred record;
BEGIN
    FOR deferred IN SELECT drop_ddl FROM pg_temp.demo_deferred ORDER BY kind, name LOOP
        EXECUTE deferred.drop_ddl;
    END LOOP;
END
$$;

-- step: profile
-- Salts 1..19. A place (weighted) gives locale, country, time zone, city, postal codes and
-- the phone numbering; the locale gives the names and the street format.
WITH params AS (
    SELECT %(seed)s::bigint AS seed, %(anchor_ts)s::timestamptz AS anchor_ts
),
place (place_no, weight, locale, country_code, time_zone, city, region, postal_codes, phone_prefix, phone_digits) AS (
    VALUES
    ( 1, 110, 'en', 'US', 'America/New_York',    'New York',         'NY',                   ARRAY['10001', '10011', '10025', '11201', '11215'], '+1212', 7),
    ( 2,  60, 'en', 'US', 'America/Chicago',     'Chicago',          'IL',                   ARRAY['60601', '60614', '60622', '60657'],          '+1312', 7),
    ( 3,  70, 'en', 'US', 'America/Los_Angeles', 'Los Angeles',      'CA',                   ARRAY['90012', '90026', '90034', '90046'],          '+1213', 7),
    ( 4,  80, 'en', 'GB', 'Europe/London',       'London',           'England',              ARRAY['SW1A 1AA', 'E1 6AN', 'N1 9GU', 'SE1 7PB'],   '+447',  9),
    ( 5,  30, 'en', 'GB', 'Europe/London',       'Manchester',       'England',              ARRAY['M1 1AE', 'M4 5JD', 'M14 5TQ', 'M20 2RN'],    '+447',  9),
    ( 6,  50, 'en', 'CA', 'America/Toronto',     'Toronto',          'ON',                   ARRAY['M5V 2T6', 'M4W 1A8', 'M6J 3P6'],             '+1416', 7),
    ( 7,  90, 'fr', 'FR', 'Europe/Paris',        'Paris',            'Île-de-France',        ARRAY['75001', '75011', '75015', '75018', '75020'], '+336',  8),
    ( 8,  35, 'fr', 'FR', 'Europe/Paris',        'Lyon',             'Auvergne-Rhône-Alpes', ARRAY['69001', '69003', '69007'],                   '+337',  8),
    ( 9,  30, 'fr', 'FR', 'Europe/Paris',        'Marseille',        'Provence-Alpes-Côte d''Azur', ARRAY['13001', '13006', '13008'],            '+336',  8),
    (10,  25, 'fr', 'BE', 'Europe/Brussels',     'Bruxelles',        'Bruxelles-Capitale',   ARRAY['1000', '1050', '1060'],                      '+324',  8),
    (11,  20, 'fr', 'CA', 'America/Toronto',     'Montréal',         'QC',                   ARRAY['H2X 1Y4', 'H3A 0G4', 'H2J 2L1'],             '+1514', 7),
    (12,  50, 'de', 'DE', 'Europe/Berlin',       'Berlin',           'Berlin',               ARRAY['10115', '10245', '10437', '12049'],          '+4915', 9),
    (13,  35, 'de', 'DE', 'Europe/Berlin',       'München',          'Bayern',               ARRAY['80331', '80469', '80796'],                   '+4917', 9),
    (14,  25, 'de', 'DE', 'Europe/Berlin',       'Hamburg',          'Hamburg',              ARRAY['20095', '20357', '22765'],                   '+4916', 9),
    (15,  25, 'de', 'AT', 'Europe/Vienna',       'Wien',             'Wien',                 ARRAY['1010', '1070', '1090'],                      '+43664', 7),
    (16,  15, 'de', 'CH', 'Europe/Zurich',       'Zürich',           'Zürich',               ARRAY['8001', '8004', '8037'],                      '+417',  8),
    (17,  55, 'es', 'ES', 'Europe/Madrid',       'Madrid',           'Comunidad de Madrid',  ARRAY['28001', '28004', '28013', '28045'],          '+346',  8),
    (18,  45, 'es', 'ES', 'Europe/Madrid',       'Barcelona',        'Cataluña',             ARRAY['08001', '08010', '08036'],                   '+346',  8),
    (19,  20, 'es', 'ES', 'Europe/Madrid',       'Sevilla',          'Andalucía',            ARRAY['41001', '41003', '41010'],                   '+346',  8),
    (20,  30, 'es', 'MX', 'America/Mexico_City', 'Ciudad de México', 'CDMX',                 ARRAY['06600', '03100', '11560'],                   '+5255', 8),
    (21,  45, 'it', 'IT', 'Europe/Rome',         'Roma',             'Lazio',                ARRAY['00184', '00153', '00197'],                   '+393',  9),
    (22,  40, 'it', 'IT', 'Europe/Rome',         'Milano',           'Lombardia',            ARRAY['20121', '20135', '20144'],                   '+393',  9),
    (23,  15, 'it', 'IT', 'Europe/Rome',         'Napoli',           'Campania',             ARRAY['80121', '80134', '80142'],                   '+393',  9)
),
-- 1000 slots, each holding a place number as often as its weight: slot = draw per mille.
slots AS (
    SELECT array_agg(place_no ORDER BY place_no) AS place_of_slot
    FROM place CROSS JOIN LATERAL generate_series(1, place.weight)
),
locale_data (locale, first_names, last_names, streets, unit_label) AS (
    VALUES
    ('en',
     ARRAY['James', 'Mary', 'John', 'Patricia', 'Robert', 'Jennifer', 'Michael', 'Linda', 'William', 'Elizabeth',
           'David', 'Barbara', 'Richard', 'Susan', 'Joseph', 'Jessica', 'Thomas', 'Sarah', 'Charles', 'Karen',
           'Emily', 'Oliver', 'Amelia', 'Harry', 'Olivia', 'George', 'Sophie', 'Jack', 'Chloe', 'Noah'],
     ARRAY['Smith', 'Johnson', 'Williams', 'Brown', 'Jones', 'Miller', 'Davis', 'Wilson', 'Anderson', 'Taylor',
           'Thomas', 'Moore', 'Jackson', 'Martin', 'Lee', 'Thompson', 'White', 'Harris', 'Clark', 'Lewis',
           'Walker', 'Hall', 'Young', 'King', 'Wright', 'Evans', 'Roberts', 'O''Brien', 'Hughes', 'Green'],
     ARRAY['Main Street', 'Oak Avenue', 'Maple Drive', 'Park Road', 'High Street', 'Church Lane', 'Elm Street',
           'Station Road', 'Victoria Road', 'Cedar Court', 'Lake View', 'Broadway'],
     'Apt '),
    ('fr',
     ARRAY['Camille', 'Léa', 'Manon', 'Chloé', 'Inès', 'Jade', 'Louise', 'Emma', 'Zoé', 'Juliette',
           'Lucas', 'Hugo', 'Louis', 'Gabriel', 'Arthur', 'Jules', 'Théo', 'Raphaël', 'Nathan', 'Mathéo',
           'Élodie', 'Céline', 'Jérôme', 'François', 'Stéphane', 'Amélie', 'Benoît', 'Hélène', 'Aurélien', 'Noémie'],
     ARRAY['Martin', 'Bernard', 'Dubois', 'Thomas', 'Robert', 'Richard', 'Petit', 'Durand', 'Leroy', 'Moreau',
           'Simon', 'Laurent', 'Lefèvre', 'Michel', 'Garcia', 'David', 'Bertrand', 'Roux', 'Vincent', 'Fournier',
           'Morel', 'Girard', 'André', 'Lefebvre', 'Mercier', 'Dupont', 'Lambert', 'Bonnet', 'François', 'Martinez'],
     ARRAY['rue de la Paix', 'avenue Victor Hugo', 'boulevard Voltaire', 'rue du Moulin', 'place de l''Église',
           'rue des Lilas', 'chemin des Vignes', 'rue Pasteur', 'allée des Tilleuls', 'rue de la République',
           'quai des Célestins', 'impasse des Roses'],
     'Appt '),
    ('de',
     ARRAY['Lukas', 'Leon', 'Finn', 'Jonas', 'Paul', 'Luis', 'Felix', 'Maximilian', 'Elias', 'Noah',
           'Mia', 'Emma', 'Hannah', 'Sophia', 'Lena', 'Lea', 'Marie', 'Anna', 'Jürgen', 'Sören',
           'Jörg', 'Günter', 'Ursula', 'Käthe', 'Björn', 'Matthias', 'Katharina', 'Sabine', 'Tobias', 'Johanna'],
     ARRAY['Müller', 'Schmidt', 'Schneider', 'Fischer', 'Weber', 'Meyer', 'Wagner', 'Becker', 'Schulz', 'Hoffmann',
           'Schäfer', 'Koch', 'Bauer', 'Richter', 'Klein', 'Wolf', 'Schröder', 'Neumann', 'Schwarz', 'Zimmermann',
           'Braun', 'Krüger', 'Hofmann', 'Hartmann', 'Lange', 'Schmitt', 'Werner', 'Schmitz', 'Krause', 'Meier'],
     ARRAY['Hauptstraße', 'Bahnhofstraße', 'Gartenweg', 'Schulstraße', 'Lindenallee', 'Bergstraße',
           'Kirchplatz', 'Mühlenweg', 'Goethestraße', 'Am Markt', 'Rosenweg', 'Parkstraße'],
     'Whg. '),
    ('es',
     ARRAY['Lucía', 'Sofía', 'Martina', 'María', 'Julia', 'Paula', 'Valeria', 'Emma', 'Daniela', 'Carla',
           'Hugo', 'Mateo', 'Martín', 'Lucas', 'Leo', 'Daniel', 'Alejandro', 'Manuel', 'Pablo', 'Álvaro',
           'José', 'Javier', 'Carmen', 'Pilar', 'Iñigo', 'Begoña', 'Andrés', 'Nuria', 'Jesús', 'Ana'],
     ARRAY['García', 'Rodríguez', 'González', 'Fernández', 'López', 'Martínez', 'Sánchez', 'Pérez', 'Gómez', 'Martín',
           'Jiménez', 'Ruiz', 'Hernández', 'Díaz', 'Moreno', 'Muñoz', 'Álvarez', 'Romero', 'Alonso', 'Gutiérrez',
           'Navarro', 'Torres', 'Domínguez', 'Vázquez', 'Ramos', 'Gil', 'Ramírez', 'Serrano', 'Blanco', 'Molina'],
     ARRAY['Calle Mayor', 'Calle del Sol', 'Avenida de la Constitución', 'Calle Real', 'Paseo del Prado',
           'Calle de Alcalá', 'Plaza de España', 'Calle San Juan', 'Calle Nueva', 'Avenida Diagonal',
           'Calle de la Luna', 'Ronda de Toledo'],
     'Piso '),
    ('it',
     ARRAY['Francesco', 'Alessandro', 'Lorenzo', 'Leonardo', 'Mattia', 'Andrea', 'Gabriele', 'Riccardo', 'Tommaso', 'Edoardo',
           'Sofia', 'Giulia', 'Aurora', 'Alice', 'Ginevra', 'Emma', 'Giorgia', 'Greta', 'Beatrice', 'Anna',
           'Niccolò', 'Chiara', 'Federica', 'Marco', 'Luca', 'Giuseppe', 'Paola', 'Elena', 'Martina', 'Matteo'],
     ARRAY['Rossi', 'Russo', 'Ferrari', 'Esposito', 'Bianchi', 'Romano', 'Colombo', 'Ricci', 'Marino', 'Greco',
           'Bruno', 'Gallo', 'Conti', 'De Luca', 'Mancini', 'Costa', 'Giordano', 'Rizzo', 'Lombardi', 'Moretti',
           'Barbieri', 'Fontana', 'Santoro', 'Mariani', 'Rinaldi', 'Caruso', 'Ferrara', 'Galli', 'Martini', 'Leone'],
     ARRAY['Via Roma', 'Via Garibaldi', 'Corso Vittorio Emanuele', 'Via Dante', 'Piazza del Popolo',
           'Via Mazzini', 'Via Verdi', 'Via Cavour', 'Viale dei Mille', 'Via della Libertà',
           'Via San Francesco', 'Vicolo Stretto'],
     'Int. ')
),
-- Names as email local parts, folded once per locale: ASCII, no apostrophes or spaces
-- (O'Brien, De Luca). MATERIALIZED: computed for the 5 locales, not for every profile.
locale_names AS MATERIALIZED (
    SELECT locale_data.*,
           ARRAY(SELECT lower(translate(name,
                            'ÀÁÂÄÃÅÇÈÉÊËÌÍÎÏÑÒÓÔÖÕÙÚÛÜàáâäãåçèéêëìíîïñòóôöõùúûü'' ',
                            'AAAAAACEEEEIIIINOOOOOUUUUaaaaaaceeeeiiiinooooouuuu'))
                 FROM unnest(locale_data.first_names) WITH ORDINALITY AS n(name, position)
                 ORDER BY position) AS first_slugs,
           ARRAY(SELECT lower(translate(name,
                            'ÀÁÂÄÃÅÇÈÉÊËÌÍÎÏÑÒÓÔÖÕÙÚÛÜàáâäãåçèéêëìíîïñòóôöõùúûü'' ',
                            'AAAAAACEEEEIIIINOOOOOUUUUaaaaaaceeeeiiiinooooouuuu'))
                 FROM unnest(locale_data.last_names) WITH ORDINALITY AS n(name, position)
                 ORDER BY position) AS last_slugs
    FROM locale_data
),
-- One row per profile with every draw it needs (OFFSET 0 keeps the planner from copying
-- the draws into each expression that uses them).
person AS (
    SELECT g.i AS profile_id,
           params.seed,
           params.anchor_ts,
           pg_temp.demo_draw(params.seed, g.i, 1, 1000)  AS place_draw,
           pg_temp.demo_draw(params.seed, g.i, 2, 30)    AS first_no,
           pg_temp.demo_draw(params.seed, g.i, 3, 30)    AS last_no,
           pg_temp.demo_draw(params.seed, g.i, 4, 1000)  AS email_draw,
           pg_temp.demo_draw(params.seed, g.i, 5, 1000)  AS email_style,
           pg_temp.demo_draw(params.seed, g.i, 6, 1000)  AS phone_draw,
           pg_temp.demo_draw(params.seed, g.i, 7, 1000000000) AS phone_number,
           pg_temp.demo_draw(params.seed, g.i, 8, 1000)  AS push_draw,
           pg_temp.demo_draw(params.seed, g.i, 9, 1000)  AS address_draw,
           pg_temp.demo_draw(params.seed, g.i, 10, 1000) AS house_no,
           pg_temp.demo_draw(params.seed, g.i, 11, 1000) AS postal_draw,
           pg_temp.demo_draw(params.seed, g.i, 12, 1000) AS name_draw,
           -- created up to three years before the anchor, updated some time since
           pg_temp.demo_draw(params.seed, g.i, 13, 1095 * 86400) + 3600 AS age_seconds,
           pg_temp.demo_unit(params.seed, g.i, 14)       AS update_fraction
    FROM generate_series(1, %(profiles)s::bigint) AS g(i)
    CROSS JOIN params
    OFFSET 0
),
located AS (
    SELECT person.*,
           place.locale, place.country_code, place.time_zone, place.city, place.region,
           place.postal_codes[1 + mod(person.postal_draw, cardinality(place.postal_codes))] AS postal_code,
           place.phone_prefix, place.phone_digits,
           locale_names.first_names[1 + person.first_no] AS first_name,
           locale_names.last_names[1 + person.last_no] AS last_name,
           locale_names.first_slugs[1 + person.first_no] AS first_slug,
           locale_names.last_slugs[1 + person.last_no] AS last_slug,
           locale_names.streets[1 + mod(person.house_no, cardinality(locale_names.streets))] AS street,
           1 + person.house_no / cardinality(locale_names.streets) AS street_no,
           locale_names.unit_label,
           person.anchor_ts - make_interval(secs => person.age_seconds) AS created_at
    FROM person
    JOIN place ON place.place_no = (SELECT place_of_slot FROM slots)[1 + person.place_draw]
    JOIN locale_names ON locale_names.locale = place.locale
)
INSERT INTO crm.profile (
    profile_id, email, phone, push_token, push_platform, locale, time_zone, first_name, last_name,
    address_line1, address_line2, postal_code, city, region, country_code, created_at, updated_at
)
SELECT
    profile_id,
    CASE
        -- draw < 17: no email; 17..19: an empty or blank string from an import
        WHEN email_draw < 17 THEN NULL
        WHEN email_draw < 20 THEN (ARRAY['', ' ', '   '])[1 + mod(email_style, 3)]
        -- 20..29: not an email address
        WHEN email_draw < 30 THEN (ARRAY[
            'not-an-email',
            first_slug || '.' || last_slug || '.at.example.com',
            first_slug || '@',
            '@example.com',
            first_slug || ' ' || last_slug || '@example.com',
            first_slug || '@example',
            'n/a'
        ])[1 + mod(email_style, 7)]
        -- the rest (30..34 are made duplicates of another profile's email in the next step)
        WHEN email_style < 700 THEN first_slug || '.' || last_slug || '.' || profile_id || '@example.com'
        WHEN email_style < 850 THEN first_slug || profile_id || '@example.net'
        WHEN email_style < 950 THEN left(first_slug, 1) || '.' || last_slug || profile_id || '@example.org'
        ELSE last_slug || '_' || first_slug || profile_id || '@example.com'
    END,
    CASE
        WHEN phone_draw < 100 THEN NULL                                -- no phone
        WHEN phone_draw < 110 THEN (ARRAY[                              -- not E.164
            '0' || lpad(mod(phone_number, 100000000)::text, 9, '6'),
            phone_prefix || ' ' || left(phone_number::text, 3) || ' ' || right(phone_number::text, 4),
            left(phone_number::text, 5),
            'n/a'
        ])[1 + mod(phone_draw, 4)]
        ELSE phone_prefix || lpad(mod(phone_number, power(10, phone_digits)::bigint)::text, phone_digits, '0')
    END,
    CASE
        WHEN push_draw >= 400 THEN NULL                               -- 40 in 100 have the app
        WHEN push_draw < 180 THEN pg_temp.demo_hex(seed, profile_id, 15) || pg_temp.demo_hex(seed, profile_id, 16)
                                  || pg_temp.demo_hex(seed, profile_id, 17) || pg_temp.demo_hex(seed, profile_id, 18)
        ELSE pg_temp.demo_hex(seed, profile_id, 15) || pg_temp.demo_hex(seed, profile_id, 16) || ':APA91b'
             || pg_temp.demo_hex(seed, profile_id, 17) || pg_temp.demo_hex(seed, profile_id, 18)
             || pg_temp.demo_hex(seed, profile_id, 19)
    END,
    CASE WHEN push_draw >= 400 THEN NULL WHEN push_draw < 180 THEN 'apns' ELSE 'fcm' END,
    locale,
    time_zone,
    CASE WHEN name_draw < 10 THEN NULL ELSE first_name END,           -- 1 in 100 without a first name
    last_name,
    CASE
        WHEN address_draw BETWEEN 35 AND 49 THEN NULL                 -- incomplete: no street
        WHEN locale IN ('en', 'fr') THEN street_no || ' ' || street
        WHEN locale = 'de' THEN street || ' ' || street_no
        ELSE street || ', ' || street_no
    END,
    CASE WHEN address_draw >= 900 THEN unit_label || (1 + mod(house_no, 40)) END,
    CASE WHEN address_draw < 20 THEN NULL ELSE postal_code END,       -- incomplete: no postal code
    CASE WHEN address_draw BETWEEN 20 AND 34 THEN NULL ELSE city END, -- incomplete: no city
    region,
    country_code,
    created_at,
    created_at + (anchor_ts - created_at) * update_fraction
FROM located;

-- step: profile_duplicates
-- Salts 20..21 (and the email draw, salt 4, of the profile step).
-- 5 in 1000 profiles share another profile's email (and name): the same person signed up
-- twice, once with different case or stray spaces. Only the address is normalized when
-- compared, so these are the duplicates targeting has to catch.
WITH params AS (
    SELECT %(seed)s::bigint AS seed, %(profiles)s::bigint AS profiles
),
pairs AS (
    SELECT g.i AS duplicate_id,
           1 + pg_temp.demo_draw(params.seed, g.i, 20, params.profiles) AS original_id,
           pg_temp.demo_draw(params.seed, g.i, 21, 4) AS variant
    FROM generate_series(1, %(profiles)s::bigint) AS g(i)
    CROSS JOIN params
    WHERE pg_temp.demo_draw(params.seed, g.i, 4, 1000) BETWEEN 30 AND 34
)
UPDATE crm.profile AS d
SET email = CASE pairs.variant
                WHEN 0 THEN upper(o.email)
                WHEN 1 THEN ' ' || o.email
                WHEN 2 THEN initcap(o.email)
                ELSE upper(left(o.email, 1)) || substr(o.email, 2) || '  '
            END,
    first_name = o.first_name,
    last_name = o.last_name,
    -- Set explicitly: the row trigger would otherwise stamp now() and break determinism.
    updated_at = d.updated_at + interval '1 second'
FROM pairs
JOIN crm.profile AS o ON o.profile_id = pairs.original_id
WHERE d.profile_id = pairs.duplicate_id
  AND o.profile_id <> pairs.duplicate_id
  AND o.email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$';

-- step: consent
-- Salts 22..24. Per channel, in 1000 profiles (the rest have no row, i.e. unknown):
--   email        700 opted_in, 150 opted_out, 100 unknown
--   sms          350 opted_in, 200 opted_out, 200 unknown
--   push         with a device token 700 / 150 / 50; without one 0 / 50 / 0
--   direct_mail  250 opted_in, 100 opted_out, 300 unknown
-- The history rows come from the statement trigger on crm.consent.
WITH params AS (
    SELECT %(seed)s::bigint AS seed, %(anchor_ts)s::timestamptz AS anchor_ts
),
-- Cumulative thresholds: opted_in below the first, opted_out below the second, unknown
-- below the third; with and without a push token.
channel (channel_no, channel, in_below, out_below, unknown_below,
         token_in_below, token_out_below, token_unknown_below, opt_out_sources) AS (
    VALUES
    (0, 'direct_mail', 250, 350, 650, 250, 350, 650,
        ARRAY['preference_center', 'customer_service', 'import']),
    (1, 'email',       700, 850, 950, 700, 850, 950,
        ARRAY['unsubscribe_link', 'unsubscribe_link', 'preference_center']),
    (2, 'push',          0,  50,  50, 700, 850, 900,
        ARRAY['device_settings', 'device_settings', 'preference_center']),
    (3, 'sms',         350, 550, 750, 350, 550, 750,
        ARRAY['sms_stop', 'sms_stop', 'preference_center'])
),
drawn AS (
    SELECT p.profile_id,
           p.created_at,
           params.anchor_ts,
           channel.channel,
           channel.opt_out_sources,
           CASE WHEN p.push_token IS NULL THEN channel.in_below ELSE channel.token_in_below END AS in_below,
           CASE WHEN p.push_token IS NULL THEN channel.out_below ELSE channel.token_out_below END AS out_below,
           CASE WHEN p.push_token IS NULL THEN channel.unknown_below ELSE channel.token_unknown_below END
               AS unknown_below,
           pg_temp.demo_draw(params.seed, p.profile_id * 4 + channel.channel_no, 22, 1000) AS status_draw,
           pg_temp.demo_draw(params.seed, p.profile_id * 4 + channel.channel_no, 23, 60) AS source_draw,
           pg_temp.demo_unit(params.seed, p.profile_id * 4 + channel.channel_no, 24) AS update_fraction
    FROM crm.profile AS p
    CROSS JOIN params
    CROSS JOIN channel
    OFFSET 0
)
INSERT INTO crm.consent (profile_id, channel, status, source, updated_at)
SELECT profile_id,
       channel,
       CASE WHEN status_draw < in_below THEN 'opted_in'
            WHEN status_draw < out_below THEN 'opted_out'
            ELSE 'unknown' END,
       CASE WHEN status_draw < in_below
                THEN (ARRAY['signup_form', 'signup_form', 'checkout', 'preference_center', 'import'])
                     [1 + mod(source_draw, 5)]
            WHEN status_draw < out_below THEN opt_out_sources[1 + mod(source_draw, 3)]
            ELSE (ARRAY['import', 'import', 'import', 'signup_form'])[1 + mod(source_draw, 4)] END,
       created_at + (anchor_ts - created_at) * update_fraction
FROM drawn
WHERE status_draw < unknown_below;

-- step: suppression
-- Salts 30..34. 5 in 1000 well-formed emails (bounced, complained or unsubscribed at the
-- email provider) and 2 in 1000 well-formed phones (replied STOP), stored normalized; two
-- profiles sharing an address give one row.
WITH params AS (
    SELECT %(seed)s::bigint AS seed, %(anchor_ts)s::timestamptz AS anchor_ts
),
-- Drawn from the ids, so only the few picked profiles are read.
picked_id AS (
    SELECT 'email' AS channel, g.i AS profile_id
    FROM generate_series(1, %(profiles)s::bigint) AS g(i) CROSS JOIN params
    WHERE pg_temp.demo_draw(params.seed, g.i, 30, 1000) < 5
    UNION ALL
    SELECT 'sms', g.i
    FROM generate_series(1, %(profiles)s::bigint) AS g(i) CROSS JOIN params
    WHERE pg_temp.demo_draw(params.seed, g.i, 32, 1000) < 2
),
picked AS (
    SELECT picked_id.channel,
           CASE picked_id.channel WHEN 'email' THEN lower(btrim(p.email)) ELSE p.phone END AS address,
           p.profile_id,
           pg_temp.demo_draw(params.seed, p.profile_id, 31, 1000) AS reason_draw
    FROM picked_id
    JOIN crm.profile AS p ON p.profile_id = picked_id.profile_id
    CROSS JOIN params
    WHERE CASE picked_id.channel
              WHEN 'email' THEN btrim(p.email) ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'
              ELSE p.phone ~ '^\+[1-9][0-9]{6,14}$'
          END
)
INSERT INTO crm.suppression (channel, address, reason, source, created_at)
SELECT DISTINCT ON (picked.channel, picked.address)
       picked.channel,
       picked.address,
       CASE
           WHEN picked.channel = 'sms' THEN 'unsubscribe'
           WHEN picked.reason_draw < 500 THEN 'hard_bounce'
           WHEN picked.reason_draw < 650 THEN 'complaint'
           ELSE 'unsubscribe'
       END,
       CASE
           WHEN picked.channel = 'sms' THEN 'sms_stop'
           WHEN picked.reason_draw < 650 THEN 'esp_webhook'
           ELSE 'list_unsubscribe'
       END,
       params.anchor_ts - make_interval(secs => 3600 + pg_temp.demo_draw(params.seed, picked.profile_id, 33, 400 * 86400))
FROM picked CROSS JOIN params
ORDER BY picked.channel, picked.address, picked.profile_id;

-- step: plan
INSERT INTO crm.plan (plan_id, code, name, tier, monthly_price)
VALUES
    (1, 'basic',   'Basic',   'entry',    4.99),
    (2, 'plus',    'Plus',    'standard', 9.99),
    (3, 'premium', 'Premium', 'premium',  19.99),
    (4, 'family',  'Family',  'premium',  24.99);

-- step: product
-- Salts 35..39. Categories in 1000: 350 hotel, 250 flight, 250 tour, 150 car; 50 inactive.
WITH params AS (
    SELECT %(seed)s::bigint AS seed
),
destination (names) AS (
    SELECT ARRAY['Lisbon', 'Paris', 'Rome', 'Barcelona', 'Vienna', 'Prague', 'Amsterdam', 'Berlin',
                 'New York', 'Kyoto', 'Marrakesh', 'Reykjavík', 'Seville', 'Edinburgh', 'Dubrovnik', 'Istanbul']
),
drawn AS (
    SELECT g.i AS product_id,
           pg_temp.demo_draw(params.seed, g.i, 35, 1000) AS category_draw,
           pg_temp.demo_draw(params.seed, g.i, 36, 1000) AS name_draw,
           pg_temp.demo_draw(params.seed, g.i, 37, 16) AS city_no,
           pg_temp.demo_draw(params.seed, g.i, 38, 16) AS other_city_no,
           pg_temp.demo_unit(params.seed, g.i, 39) AS price_fraction
    FROM generate_series(1, %(products)s::bigint) AS g(i)
    CROSS JOIN params
),
categorized AS (
    SELECT drawn.*,
           CASE WHEN category_draw < 350 THEN 'hotel'
                WHEN category_draw < 600 THEN 'flight'
                WHEN category_draw < 850 THEN 'tour'
                ELSE 'car' END AS category,
           destination.names[1 + city_no] AS city,
           destination.names[1 + CASE WHEN other_city_no = city_no THEN mod(city_no + 1, 16) ELSE other_city_no END]
               AS other_city
    FROM drawn CROSS JOIN destination
)
INSERT INTO crm.product (product_id, sku, name, category, price, active)
SELECT product_id,
       CASE category WHEN 'hotel' THEN 'HTL' WHEN 'flight' THEN 'FLT' WHEN 'tour' THEN 'TOR' ELSE 'CAR' END
           || '-' || lpad(product_id::text, greatest(6, length(product_id::text)), '0'),
       CASE category
           WHEN 'hotel' THEN (ARRAY['Grand Hotel', 'Boutique Hotel', 'Harbour Inn', 'Old Town Suites',
                                    'Park Hotel', 'Riverside Lodge'])[1 + mod(name_draw, 6)] || ' ' || city
           WHEN 'flight' THEN 'Flight ' || other_city || ' to ' || city
           WHEN 'tour' THEN (ARRAY['Food walk', 'Old town walking tour', 'Sunset cruise', 'Museum pass',
                                   'Wine tasting', 'Bike tour'])[1 + mod(name_draw, 6)] || ', ' || city
           ELSE (ARRAY['Economy', 'Compact', 'SUV', 'Convertible', 'Minivan', 'Electric'])[1 + mod(name_draw, 6)]
                || ' car rental, ' || city
       END,
       category,
       round((CASE category WHEN 'hotel' THEN 80 + 370 * price_fraction
                            WHEN 'flight' THEN 49 + 850 * price_fraction
                            WHEN 'tour' THEN 15 + 165 * price_fraction
                            ELSE 25 + 135 * price_fraction END)::numeric, 2),
       name_draw >= 50
FROM categorized;

-- step: inventory
-- Salts 40..42. 120 in 1000 products are at or below their reorder level (some sold out).
WITH params AS (
    SELECT %(seed)s::bigint AS seed, %(anchor_ts)s::timestamptz AS anchor_ts
),
levels AS (
    SELECT p.product_id,
           CASE p.category WHEN 'hotel' THEN 8 WHEN 'flight' THEN 15 WHEN 'tour' THEN 10 ELSE 4 END AS reorder_level,
           pg_temp.demo_draw(params.seed, p.product_id, 40, 1000) AS stock_draw,
           pg_temp.demo_draw(params.seed, p.product_id, 41, 400) AS stock
    FROM crm.product AS p CROSS JOIN params
)
INSERT INTO crm.inventory (product_id, quantity, reorder_level, updated_at)
SELECT levels.product_id,
       CASE WHEN stock_draw < 120 THEN mod(stock, reorder_level + 1) ELSE reorder_level + 1 + stock END,
       reorder_level,
       params.anchor_ts - make_interval(secs => pg_temp.demo_draw(params.seed, levels.product_id, 42, 7 * 86400))
FROM levels CROSS JOIN params;

-- step: subscription
-- Salts 43..49. 300 in 1000 profiles subscribe (plans in 1000: 400 basic, 300 plus,
-- 180 premium, 120 family); the current subscription is 800 active, 70 paused, 130
-- cancelled, and 100 in 1000 subscribers also have an earlier, cancelled one.
-- Ids are profile_id * 10 + 0 (earlier) or + 1 (current): never the subscriber's own
-- profile id, so a query joining the wrong columns does not quietly look right.
WITH params AS (
    SELECT %(seed)s::bigint AS seed, %(anchor)s::date AS anchor
),
subscriber AS (
    SELECT g.i AS profile_id,
           params.anchor,
           pg_temp.demo_draw(params.seed, g.i, 46, 1000) AS earlier_draw,
           pg_temp.demo_draw(params.seed, g.i, 43, 1000) AS status_draw,
           params.anchor - pg_temp.demo_draw(params.seed, g.i, 47, 1095)::integer AS current_start,
           params.seed
    FROM generate_series(1, %(profiles)s::bigint) AS g(i)
    CROSS JOIN params
    WHERE pg_temp.demo_draw(params.seed, g.i, 45, 1000) < 300
)
INSERT INTO crm.subscription (subscription_id, profile_id, plan_id, status, started_on, renews_on)
SELECT s.profile_id * 10 + k.k,
       s.profile_id,
       CASE WHEN plan_draw < 400 THEN 1 WHEN plan_draw < 700 THEN 2 WHEN plan_draw < 880 THEN 3 ELSE 4 END,
       status,
       CASE WHEN k.k = 1 THEN s.current_start
            ELSE s.current_start - 30 - pg_temp.demo_draw(s.seed, s.profile_id, 48, 700)::integer END,
       CASE WHEN status = 'active' THEN s.anchor + 1 + pg_temp.demo_draw(s.seed, s.profile_id, 49, 30)::integer END
FROM subscriber AS s
CROSS JOIN LATERAL generate_series(CASE WHEN s.earlier_draw < 100 THEN 0 ELSE 1 END, 1) AS k(k)
CROSS JOIN LATERAL (
    SELECT pg_temp.demo_draw(s.seed, s.profile_id * 10 + k.k, 45, 1000) AS plan_draw,
           CASE
               WHEN k.k = 0 THEN 'cancelled'
               WHEN s.status_draw < 70 THEN 'paused'
               WHEN s.status_draw < 200 THEN 'cancelled'
               ELSE 'active'
           END AS status
) AS d;

-- step: booking
-- Salts 50..59. Bookings per profile in 1000: 320 none, 260 one, 190 two, 105 three,
-- 65 four, 30 five, 15 six, 10 seven, 5 eight (about 1.5 on average). Trips start from
-- 60 days before to 120 days after the anchor, were booked 1 to 180 days before the
-- earlier of the trip and the anchor, and popular products get more bookings. Past trips
-- are completed (850) or cancelled; future ones confirmed (880) or cancelled.
-- Ids are profile_id * 10 + n, n = 1..8.
-- With a booking scale (a benchmark's "bookings per profile"), each profile's count is
-- multiplied by it and rounded down or up by a draw (salt 57), so the mean is scaled
-- exactly, and ids are profile_id * stride + n; with no scale the rows are as above.
WITH params AS (
    SELECT %(seed)s::bigint AS seed, %(anchor)s::date AS anchor, %(products)s::bigint AS products,
           %(booking_scale)s::double precision AS scale, %(booking_id_stride)s::bigint AS stride
),
base AS (
    SELECT g.i AS profile_id,
           CASE
               WHEN d < 320 THEN 0 WHEN d < 580 THEN 1 WHEN d < 770 THEN 2 WHEN d < 875 THEN 3
               WHEN d < 940 THEN 4 WHEN d < 970 THEN 5 WHEN d < 985 THEN 6 WHEN d < 995 THEN 7
               ELSE 8
           END AS bookings
    FROM generate_series(1, %(profiles)s::bigint) AS g(i)
    CROSS JOIN params
    CROSS JOIN LATERAL (SELECT pg_temp.demo_draw(params.seed, g.i, 50, 1000) AS d) AS draw
),
booker AS (
    SELECT base.profile_id,
           CASE WHEN params.scale IS NULL THEN base.bookings
                ELSE floor(base.bookings * params.scale + pg_temp.demo_unit(params.seed, base.profile_id, 57))::integer
           END AS bookings
    FROM base CROSS JOIN params
),
trip AS (
    SELECT id.booking_id,
           booker.profile_id,
           1 + floor(params.products * pg_temp.demo_unit(params.seed, id.booking_id, 51) ^ 2)::bigint
               AS product_id,
           params.anchor - 60 + pg_temp.demo_draw(params.seed, id.booking_id, 52, 181)::integer
               AS starts_on,
           pg_temp.demo_draw(params.seed, id.booking_id, 53, 180)::integer AS lead_days,
           pg_temp.demo_draw(params.seed, id.booking_id, 54, 86400) AS second_of_day,
           pg_temp.demo_draw(params.seed, id.booking_id, 55, 1000) AS status_draw,
           pg_temp.demo_draw(params.seed, id.booking_id, 56, 7) AS units,
           params.anchor
    FROM booker
    CROSS JOIN params
    CROSS JOIN LATERAL generate_series(1, booker.bookings) AS n(n)
    CROSS JOIN LATERAL (SELECT booker.profile_id * params.stride + n.n AS booking_id) AS id
)
INSERT INTO crm.booking (booking_id, profile_id, product_id, status, booked_at, starts_on, amount)
SELECT trip.booking_id,
       trip.profile_id,
       trip.product_id,
       CASE
           WHEN trip.starts_on < trip.anchor THEN CASE WHEN status_draw < 850 THEN 'completed' ELSE 'cancelled' END
           ELSE CASE WHEN status_draw < 880 THEN 'confirmed' ELSE 'cancelled' END
       END,
       ((least(trip.starts_on, trip.anchor) - 1 - trip.lead_days)::timestamp
           + make_interval(secs => trip.second_of_day)) AT TIME ZONE 'UTC',
       trip.starts_on,
       round(product.price * (1 + trip.units), 2)
FROM trip
JOIN crm.product AS product ON product.product_id = trip.product_id;

-- step: restore_constraints
-- Indexes first (PostgreSQL builds each with parallel workers where it can), then the
-- foreign keys, each validated by one join.
SET LOCAL maintenance_work_mem = '256MB';
DO $$
DECLARE
    deferred record;
BEGIN
    FOR deferred IN SELECT create_ddl FROM pg_temp.demo_deferred ORDER BY kind DESC, name LOOP
        EXECUTE deferred.create_ddl;
    END LOOP;
END
$$;

-- step: teardown
DROP FUNCTION pg_temp.demo_draw(bigint, bigint, integer, bigint);
DROP FUNCTION pg_temp.demo_unit(bigint, bigint, integer);
DROP FUNCTION pg_temp.demo_hex(bigint, bigint, integer);

-- step: analyze
ANALYZE crm.profile, crm.consent, crm.consent_history, crm.suppression, crm.product, crm.inventory,
        crm.plan, crm.subscription, crm.booking;
