-- Newest-first listings with keyset pages (herald.db.listings): each filter a tenant searches
-- by has an index that yields its rows already in (created_at DESC, id DESC) order, so a page
-- reads `limit` rows whatever the tenant's size. Channel (a handful of values) is filtered on
-- the creation-time index.
DROP INDEX messages_tenant_created;
CREATE INDEX messages_tenant_created ON messages (tenant_id, created_at DESC, id DESC);
CREATE INDEX messages_tenant_status ON messages (tenant_id, status, created_at DESC, id DESC);
CREATE INDEX messages_tenant_template ON messages (tenant_id, template_name, created_at DESC, id DESC);
CREATE INDEX messages_tenant_reference ON messages (tenant_id, reference, created_at DESC, id DESC)
    WHERE reference IS NOT NULL;
CREATE INDEX tenants_created ON tenants (created_at DESC, id DESC);
