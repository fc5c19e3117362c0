-- Content keys are stored wrapped under the key-encryption key from the environment
-- (herald.keyring): the database alone no longer opens message content. `key` holds a key in
-- clear only for rows written before this migration, until `herald migrate` (or
-- `herald rewrap-secrets`) wraps them; readers take either form meanwhile.
ALTER TABLE content_keys
    ADD COLUMN wrapped bytea,
    ALTER COLUMN key DROP NOT NULL,
    ADD CONSTRAINT content_keys_one_form CHECK ((key IS NULL) <> (wrapped IS NULL));
