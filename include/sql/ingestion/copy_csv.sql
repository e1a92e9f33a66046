-- A CSV file's data lines, straight from the file's bytes (UTF-8).
COPY ingest_stage ({columns}) FROM STDIN (FORMAT csv, DELIMITER {delimiter}, QUOTE {quote}, NULL {null}, ENCODING 'UTF8')
