"""WhatsApp Business Cloud API (Meta Graph API): the wire format, its error codes, the client."""
