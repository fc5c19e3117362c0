-- Tenants, keys, templates, and the message-status projection.
-- Recipients and bodies are deliberately NOT stored: the status projection does not need them,
-- and data we never keep is data we never leak or have to purge.

CREATE TABLE tenants (
    id                    uuid PRIMARY KEY,
    name                  text NOT NULL,
    tier                  text NOT NULL CHECK (tier IN ('free', 'standard', 'enterprise')),
    verified              boolean NOT NULL DEFAULT false,
    suspended             boolean NOT NULL DEFAULT false,
    callback_url          text,
    callback_secret       text,
    rate_limit_per_second integer CHECK (rate_limit_per_second > 0),
    daily_recipient_limit integer CHECK (daily_recipient_limit >= 0),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    kind        text NOT NULL CHECK (kind IN ('live', 'test')),
    salt        bytea NOT NULL,
    hash        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE templates (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    name        text NOT NULL,
    language    text NOT NULL,
    version     integer NOT NULL,
    category    text NOT NULL CHECK (category IN ('authentication', 'utility', 'marketing')),
    channel     text NOT NULL CHECK (channel IN ('sms', 'whatsapp', 'email')),
    body        text NOT NULL,
    status      text NOT NULL DEFAULT 'approved' CHECK (status IN ('approved', 'paused', 'rejected')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    PRIMARY KEY (tenant_id, name, language, version)
);

CREATE TABLE messages (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid NOT NULL,
    key_kind           text NOT NULL,
    channel            text NOT NULL,
    category           text NOT NULL,
    template_name      text NOT NULL,
    template_language  text NOT NULL,
    template_version   integer NOT NULL,
    country            text,
    reference          text,
    status             text NOT NULL,
    created_at         timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_tenant_created ON messages (tenant_id, created_at);

-- One row per (message, status): a redelivered event is a no-op.
CREATE TABLE message_events (
    message_id           uuid NOT NULL,
    status               text NOT NULL,
    at                   timestamptz NOT NULL,
    reason               text,
    provider_message_id  text,
    PRIMARY KEY (message_id, status)
);
