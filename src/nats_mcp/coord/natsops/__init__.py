"""Guarded NATS operations exposed as tools: streams, consumers, KV and raw publish under policy."""
