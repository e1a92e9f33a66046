-- A table a source declares: its columns and types, its business key as primary key.
CREATE TABLE {table} ({columns}, PRIMARY KEY ({key}))
