-- A deferral is now noted *before* its copy is published, with the copy's not-before time, so
-- that no crash can leave a copy on herald.retry without a note (the gap 0013 left: a worker
-- killed between the broker's acknowledgement and the note made its successor defer the record
-- again, under a different not-before time, and both copies were sent). A worker that reads a
-- noted record again publishes the same copy again (same message id, attempt and not-before:
-- one retry key), and herald.retry records are handled once per key, so a copy published twice
-- is sent once. Notes now cover herald.retry records deferred again as well.
-- Rows written before this migration have no copy time: they were noted after their copy was
-- acknowledged, so their record is skipped as before. Nullable, no default: rewrites nothing.
ALTER TABLE deferred_records ADD COLUMN copy_not_before bigint;
