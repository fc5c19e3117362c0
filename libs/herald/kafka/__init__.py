"""Kafka plumbing: topic catalogue, producer, consumer loop. Speaks only the Kafka protocol."""
