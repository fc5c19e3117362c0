-- A provider's connection limit held across workers (an SMTP relay allows so many connections
-- from one client). A worker holds a slot for each connection it keeps open and renews the
-- lease while it lives; a worker that dies lets its slots go when their leases end.
CREATE TABLE connection_slots (
    provider     text        NOT NULL,
    slot         integer     NOT NULL,
    holder       uuid,
    leased_until timestamptz NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (provider, slot)
);

-- The workers that want a provider's connections now (holding or waiting for one): each
-- takes an equal share of the limit, so a worker joining a busy relay gets its part.
CREATE TABLE connection_members (
    provider   text        NOT NULL,
    member     uuid        NOT NULL,
    seen_until timestamptz NOT NULL,
    PRIMARY KEY (provider, member)
);
