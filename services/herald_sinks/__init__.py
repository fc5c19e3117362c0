"""`herald sinks`: consumers of the message and event topics that record effects in Postgres."""
