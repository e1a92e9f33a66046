-- What target_step.sql would write for a step, counted instead of written: messages per
-- reason (NULL: sendable), from the same target_reasoning.sql, composed in below.
SELECT final_reason, count(*)
FROM ({reasoning}) AS targeted
GROUP BY final_reason
