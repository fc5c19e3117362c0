"""Email's key material: DKIM keys and one-click unsubscribe tokens (shared by the API and the worker)."""
