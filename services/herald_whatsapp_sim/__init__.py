"""A double of Meta's WhatsApp Business Cloud API (Graph API), for `make run` and the tests."""
