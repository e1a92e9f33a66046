-- `campaigns calculate`: evaluate an audience SELECT, or one block of it, once into a
-- temporary table that goes with the calculation's rolled-back transaction. Its counts, the
-- combination of the blocks and the evaluation of the audience then read the table instead
-- of running the SELECT again.
CREATE TEMP TABLE {table} ON COMMIT DROP AS
{audience}
