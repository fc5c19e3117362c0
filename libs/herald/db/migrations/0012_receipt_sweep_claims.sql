-- Several `herald sinks` processes each run the receipt-deadline sweep. A sweep now claims the
-- overdue messages it fails (`receipt_swept_at`, the database's clock) so that two sweeps, at
-- once or one after the other before the projection has applied the first's events, do not
-- both emit `failed` for one message; a claim whose events never landed lapses and the message
-- is swept again. Nullable, no default: adding it rewrites nothing.
ALTER TABLE messages ADD COLUMN receipt_swept_at timestamptz;
