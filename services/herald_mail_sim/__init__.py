"""A double of an SMTP relay and of the DNS that publishes senders' DKIM keys (`herald mail-sim`)."""
