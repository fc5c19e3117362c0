-- Campaigns (herald.db.campaigns): a template sent to the rows of an uploaded file.
-- `next_row` is the production cursor: rows before it are queued (or refused), and it moves in
-- the transaction that records what the producer did with them, held by `lease_owner`.
CREATE TABLE campaigns (
    id                uuid PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenants (id),
    key_kind          text NOT NULL,
    name              text NOT NULL,
    template_name     text NOT NULL,
    template_language text NOT NULL,
    send_at           timestamptz,
    ttl_seconds       integer,
    state             text NOT NULL DEFAULT 'draft'
        CHECK (state IN ('draft', 'scheduled', 'sending', 'paused', 'completed', 'cancelled')),
    content_key       integer,
    rows_total        integer NOT NULL DEFAULT 0,
    rejected          integer NOT NULL DEFAULT 0,
    accepted          integer NOT NULL DEFAULT 0,
    next_row          integer NOT NULL DEFAULT 1,
    accept_tail       boolean NOT NULL DEFAULT false,
    lease_owner       uuid,
    lease_until       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    cancelled_at      timestamptz
);
CREATE INDEX campaigns_tenant ON campaigns (tenant_id, created_at DESC, id DESC);
CREATE INDEX campaigns_runnable ON campaigns (send_at) WHERE state IN ('scheduled', 'sending');

-- A row that validated at upload: its recipient and params sealed under the campaign's content
-- key (`to` never in clear), the country and segments in clear for the estimate, the recipient's
-- keyed hash for the daily-limit figure.
CREATE TABLE campaign_rows (
    campaign_id uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    row_no      integer NOT NULL,
    country     text,
    segments    smallint NOT NULL,
    recipient   bytea NOT NULL,
    content     bytea NOT NULL,
    PRIMARY KEY (campaign_id, row_no)
);

-- A row refused at upload or when it was produced: the row number and the problem, never the value.
CREATE TABLE campaign_rejections (
    campaign_id uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    row_no      integer NOT NULL,
    code        text NOT NULL,
    field       text,
    PRIMARY KEY (campaign_id, row_no)
);

ALTER TABLE messages ADD COLUMN campaign_id uuid;
-- A campaign's counts by status, and its messages newest first (`GET /v1/messages?campaign=`).
CREATE INDEX messages_campaign ON messages (campaign_id, status) WHERE campaign_id IS NOT NULL;
CREATE INDEX messages_campaign_listing ON messages (campaign_id, created_at DESC, id DESC)
    WHERE campaign_id IS NOT NULL;
