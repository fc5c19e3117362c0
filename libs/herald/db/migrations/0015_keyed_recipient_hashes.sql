-- Recipient hashes become HMACs under a key derived from the key-encryption key
-- (herald.domain.limits.RecipientHasher). The rows written before were plain SHA-256 of
-- tenant and number, reversible by enumerating a number plan: they are deleted, not kept beside
-- the new ones. The rolling 24 h recipient count restarts at this migration.
DELETE FROM tenant_recipients;
