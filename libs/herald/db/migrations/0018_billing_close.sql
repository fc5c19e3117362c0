-- The billing team's month close (issue #30): periods, adjustments, credits, customers.

-- Every ledger row belongs to a billing period (the first day of a UTC month). A usage row's
-- period is the month of its billing time, unless that month was already closed: then the row
-- posts to the first open month as an `adjustment`, keeping its billing time, so a closed
-- month's ledger and exports never change again.
ALTER TABLE billing_records ADD COLUMN period date;
UPDATE billing_records SET period = date_trunc('month', billed_at AT TIME ZONE 'UTC')::date;
ALTER TABLE billing_records ALTER COLUMN period SET NOT NULL;
ALTER TABLE billing_records ADD COLUMN kind text NOT NULL DEFAULT 'usage' CHECK (kind IN ('usage', 'adjustment'));
CREATE INDEX billing_records_period ON billing_records (period, tenant_id);
DROP INDEX billing_records_tenant_month;

-- Closed months, in order and without gaps (closing a month needs the one before it closed, or
-- no earlier close at all). `totals` is what the month held when it closed, per tenant and
-- currency, for anyone to check that it still does.
CREATE TABLE billing_closes (
    period     date PRIMARY KEY CHECK (extract(day FROM period) = 1),
    closed_at  timestamptz NOT NULL DEFAULT now(),
    closed_by  text NOT NULL,
    totals     jsonb NOT NULL
);

-- Credits and corrections: signed amounts in a tenant's period, each with its reason and who
-- made it, pointing at what it corrects (a message's ledger row or another entry). Never
-- edited or deleted: a mistake is corrected by another entry.
CREATE TABLE billing_entries (
    id                   uuid PRIMARY KEY,
    tenant_id            uuid NOT NULL REFERENCES tenants (id),
    period               date NOT NULL CHECK (extract(day FROM period) = 1),
    kind                 text NOT NULL CHECK (kind IN ('credit', 'correction')),
    amount_micros        bigint NOT NULL CHECK (amount_micros <> 0),
    currency             text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    corrects_message_id  uuid,
    corrects_entry_id    uuid REFERENCES billing_entries (id),
    reason               text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    created_by           text NOT NULL CHECK (length(created_by) BETWEEN 1 AND 200),
    created_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (kind <> 'credit' OR amount_micros < 0),
    CHECK (kind <> 'correction' OR corrects_message_id IS NOT NULL OR corrects_entry_id IS NOT NULL)
);
CREATE INDEX billing_entries_period ON billing_entries (period, tenant_id);

-- Who a tenant is to the billing team: the legal name and the id in their billing system on an
-- invoice, the currency every one of its messages is priced in (by the latest card in that
-- currency), and the country and VAT number that decide the tax.
CREATE TABLE billing_customers (
    tenant_id             uuid PRIMARY KEY REFERENCES tenants (id),
    legal_name            text NOT NULL,
    external_customer_id  text UNIQUE,
    currency              text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    country               text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    vat_id                text,
    updated_at            timestamptz NOT NULL DEFAULT now()
);
