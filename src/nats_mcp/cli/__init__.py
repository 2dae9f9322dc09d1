"""The command-line boundary: the `nats-mcp` command and its groups."""
