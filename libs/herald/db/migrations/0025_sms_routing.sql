-- SMS providers and routes as configuration (herald.domain.sms_routing), read by every worker
-- within seconds of a change (`sms_config.version`), and tenants' own sender addresses.

-- A provider account Herald sends through. `secret` (an SMPP password, a Twilio auth token) is
-- wrapped under the KEK (herald.keyring, context `sms-provider:<name>:secret`), never answered.
CREATE TABLE sms_providers (
    name             text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,39}$'),
    kind             text NOT NULL CHECK (kind IN ('smpp', 'twilio', 'carrier')),
    endpoint         text NOT NULL,
    account          text NOT NULL DEFAULT '',
    secret           bytea,
    sender           text NOT NULL DEFAULT '',
    rate_per_second  integer NOT NULL DEFAULT 0 CHECK (rate_per_second >= 0),
    window_size      integer NOT NULL DEFAULT 10 CHECK (window_size BETWEEN 1 AND 1000),
    binds            integer NOT NULL DEFAULT 1 CHECK (binds BETWEEN 1 AND 32),
    prices           jsonb NOT NULL DEFAULT '{}',
    enabled          boolean NOT NULL DEFAULT true,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Which providers carry sms to a country (or '*', every other), for every tenant or for one:
-- the most specific route wins (tenant and country, tenant, country, '*').
CREATE TABLE sms_routes (
    tenant_id   uuid REFERENCES tenants (id),
    country     text NOT NULL CHECK (country ~ '^([A-Z]{2}|\*)$'),
    strategy    text NOT NULL CHECK (strategy IN ('ordered', 'cost')),
    providers   text[] NOT NULL CHECK (cardinality(providers) BETWEEN 1 AND 8),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX sms_routes_key ON sms_routes (coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'), country);

-- Bumped in the transaction of every provider or route change: workers poll it.
CREATE TABLE sms_config (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), version bigint NOT NULL);
INSERT INTO sms_config (version) VALUES (0);

-- A tenant's own sender (a long number, a short code, an alphanumeric id): what its sms are
-- sent from, and how a reply (STOP) to it is known to be the tenant's.
ALTER TABLE tenants ADD COLUMN sms_sender text UNIQUE;
