-- SMS segments (herald.domain.segments): decided at accept, billed per segment.

-- On the message: how many segments its text takes (1 for every other channel, and for rows
-- projected before the count existed).
ALTER TABLE messages ADD COLUMN segments smallint NOT NULL DEFAULT 1 CHECK (segments >= 1);

-- On the ledger line: what it charges for, quantity x unit price. One row per message still:
-- the quantity is the message's segments (1 for whatsapp and email).
ALTER TABLE billing_records ADD COLUMN quantity integer NOT NULL DEFAULT 1 CHECK (quantity >= 1);
