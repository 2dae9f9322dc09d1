"""The dashboard: a live admin web page (and ``nats-mcp top``) over read-only queries and the audit stream."""
