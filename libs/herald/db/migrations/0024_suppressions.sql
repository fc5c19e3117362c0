-- The suppression list: per tenant and channel, recipients who must not get its marketing
-- (herald.domain.suppressions). Recipients as keyed hashes (RecipientHasher), never in clear:
-- `hint` is what a tenant recognises an entry by (the number's last three digits, the
-- address's first letter and domain).
CREATE TABLE suppressions (
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    channel         text NOT NULL CHECK (channel IN ('sms', 'whatsapp', 'email')),
    recipient_hash  bytea NOT NULL,
    hint            text NOT NULL,
    reason          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel, recipient_hash)
);
-- The cursor's order for a tenant's list: (hash, channel) across channels.
CREATE INDEX suppressions_listing ON suppressions (tenant_id, recipient_hash, channel);
