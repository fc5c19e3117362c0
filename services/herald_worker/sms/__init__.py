"""SMS through configured providers: SMPP binds, an HTTP aggregator, routes with failover."""
