"""The fleet boundary: a coordinator that starts agents when work waits and stops them when idle (`nats-mcp fleet`)."""
