-- Billing: versioned rate cards and the per-message ledger.

-- The tenant's tier when the message was accepted decides whether it is billable (a tier change
-- applies to messages accepted after it). NULL on rows projected before this column existed:
-- billing then falls back to the tenant's current tier.
ALTER TABLE messages ADD COLUMN tier text;

-- A rate card version prices messages billed at or after `effective_from` until a later
-- version takes effect. Versions are never edited: a correction is a new version.
CREATE TABLE rate_cards (
    version         integer PRIMARY KEY,
    effective_from  timestamptz NOT NULL,
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    note            text,
    imported_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rate_cards_in_force ON rate_cards (effective_from DESC, version DESC);

-- Unit prices in integer micro-units of the card's currency (1 EUR = 1,000,000). `country` is an
-- ISO 3166-1 alpha-2 code or '*', the fallback row every channel x category pair must have.
CREATE TABLE rate_card_prices (
    version            integer NOT NULL REFERENCES rate_cards (version),
    channel            text NOT NULL CHECK (channel IN ('sms', 'whatsapp', 'email')),
    category           text NOT NULL CHECK (category IN ('authentication', 'utility', 'marketing')),
    country            text NOT NULL CHECK (country ~ '^([A-Z]{2}|\*)$'),
    unit_price_micros  bigint NOT NULL CHECK (unit_price_micros >= 0),
    PRIMARY KEY (version, channel, category, country)
);

-- One row per billable message, never two: the primary key is the message id and the ledger
-- sink inserts with ON CONFLICT DO NOTHING, so redelivered or replayed events change nothing.
-- Rows are never updated or deleted by Herald (retention keeps them). No foreign key on the
-- version: the insert takes it from rate_cards itself, and the check cost ~20% of the write.
CREATE TABLE billing_records (
    message_id         uuid PRIMARY KEY,
    tenant_id          uuid NOT NULL,
    channel            text NOT NULL,
    category           text NOT NULL,
    country            text,
    rate_card_version  integer NOT NULL,
    unit_price_micros  bigint NOT NULL,
    currency           text NOT NULL,
    billed_at          timestamptz NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX billing_records_month ON billing_records (billed_at);
CREATE INDEX billing_records_tenant_month ON billing_records (tenant_id, billed_at);

-- Billable-looking events whose message row the status projection has not written yet (the two
-- sinks are separate consumer groups). Settled into the ledger once the row appears.
CREATE TABLE billing_pending (
    message_id   uuid NOT NULL,
    status       text NOT NULL,
    at           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, status)
);
