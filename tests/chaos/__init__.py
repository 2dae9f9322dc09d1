"""Chaos tests: many real OS processes against one real nats-server, some of them dying on purpose."""
