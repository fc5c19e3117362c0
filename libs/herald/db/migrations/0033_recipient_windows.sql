-- Each limited tenant's rolling-window count, exact at `since` (= the last reservation's time
-- minus the 24 h window), so a reservation counts only the recipients that aged out since then
-- instead of every recipient in the window (herald.db.recipients). Written only under the
-- tenant's reservation lock.
CREATE TABLE tenant_recipient_windows (
    tenant_id  uuid PRIMARY KEY,
    since      timestamptz NOT NULL,
    used       integer NOT NULL CHECK (used >= 0)
);
