-- The addresses tenants send email from (herald.domain.email.Identity), each with the DKIM key
-- that signs its mail. `private_key` is the PEM wrapped under the KEK (herald.keyring, context
-- `email-dkim:<tenant>:<from_address>`), never answered; `public_key` is what the tenant
-- publishes. A tenant sends from an address only once its record is seen in DNS (`verified`).
CREATE TABLE email_identities (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    from_address  text NOT NULL CHECK (from_address = lower(from_address) AND from_address LIKE '%_@_%'),
    from_name     text,
    selector      text NOT NULL CHECK (selector ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    public_key    text NOT NULL,
    private_key   bytea NOT NULL,
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'verified')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    verified_at   timestamptz,
    PRIMARY KEY (tenant_id, from_address)
);
