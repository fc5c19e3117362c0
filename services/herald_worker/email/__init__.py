"""Email delivery: MIME messages signed with the tenant's DKIM key, handed to an SMTP relay."""
