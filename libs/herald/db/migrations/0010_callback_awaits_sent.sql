-- A receipt's outbox row used to say only that it was a receipt (`follows_sent`), and every poll
-- probed the (message_id, 'sent') key for each receipt within its hold to learn whether its
-- `sent` had been recorded: ~7,000 index probes per 100 ms poll when the dispatcher is behind.
-- The flag now says whether the receipt still waits: it is set only if no `sent` row of its
-- message exists when the receipt is recorded, and cleared when that `sent` is recorded.
ALTER TABLE callback_outbox RENAME COLUMN follows_sent TO awaits_sent;
UPDATE callback_outbox o SET awaits_sent = false
WHERE awaits_sent AND EXISTS (SELECT 1 FROM callback_outbox s WHERE s.message_id = o.message_id AND s.status = 'sent');
