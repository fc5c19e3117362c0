-- Each tenant's own WhatsApp Business Account (#22). Its access token and app secret are stored
-- wrapped under the KEK (herald.keyring; context `whatsapp:<tenant>:<field>`), the verify token
-- only as its SHA-256 (it is matched, never shown). One account per tenant, several numbers.
CREATE TABLE whatsapp_accounts (
    tenant_id          uuid PRIMARY KEY REFERENCES tenants (id),
    waba_id            text NOT NULL UNIQUE,
    display_name       text NOT NULL,
    access_token       bytea NOT NULL,
    app_secret         bytea NOT NULL,
    verify_token_hash  bytea NOT NULL,
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    suspended_reason   text,
    messaging_limit    text NOT NULL DEFAULT 'TIER_250',
    quality            text,
    connected_at       timestamptz NOT NULL DEFAULT now(),
    rotated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX whatsapp_accounts_verify ON whatsapp_accounts (verify_token_hash);

CREATE TABLE whatsapp_numbers (
    phone_number_id       text PRIMARY KEY,
    tenant_id             uuid NOT NULL REFERENCES whatsapp_accounts (tenant_id) ON DELETE CASCADE,
    position              smallint NOT NULL,
    throughput            integer NOT NULL DEFAULT 80 CHECK (throughput BETWEEN 1 AND 1000),
    display_phone_number  text
);
CREATE INDEX whatsapp_numbers_tenant ON whatsapp_numbers (tenant_id, position);

-- WhatsApp templates carry Meta's review: its id, status and (when Meta recategorised it) the
-- category the tenant asked for beside the one Meta decided, which `category` then holds.
ALTER TABLE templates
    ADD COLUMN provider_template_id text,
    ADD COLUMN rejection_reason text,
    ADD COLUMN requested_category text,
    ADD COLUMN parts jsonb,
    DROP CONSTRAINT templates_status_check,
    ADD CONSTRAINT templates_status_check CHECK (status IN ('pending', 'approved', 'rejected', 'paused', 'disabled'));
CREATE INDEX templates_provider ON templates (provider_template_id) WHERE provider_template_id IS NOT NULL;

-- A WhatsApp status carries Meta's pricing, which decides the ledger line: the category Meta
-- billed (when it is not the message's) and whether it bills at all. It travels with the status
-- from the webhook to the ledger and to reconciliation; and, when failed, Meta's code and title.
ALTER TABLE provider_receipts
    ADD COLUMN pricing_category text,
    ADD COLUMN billable boolean,
    ADD COLUMN provider_error text;
ALTER TABLE message_events ADD COLUMN pricing_category text, ADD COLUMN billable boolean;
ALTER TABLE billing_pending ADD COLUMN pricing_category text, ADD COLUMN billable boolean;
