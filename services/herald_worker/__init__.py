"""`herald worker`: consume class topics, send through providers, emit status events."""
