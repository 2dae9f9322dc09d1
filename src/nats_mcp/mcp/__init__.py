"""The MCP boundary: tool list, schemas, annotations and results, on the official SDK; no NATS code here."""
