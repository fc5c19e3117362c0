"""`herald carrier-sim`: a simulated carrier / WhatsApp gateway for demos, tests and load runs."""
