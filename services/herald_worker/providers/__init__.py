"""Provider adapters. Each decides, at the adapter, which of three kinds an outcome is:
accepted, retryable (transient; may carry Retry-After) or permanent (never retried)."""
