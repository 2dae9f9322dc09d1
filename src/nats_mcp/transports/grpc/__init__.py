"""The gRPC transport boundary: MCP JSON-RPC messages tunnelled over gRPC with mutual TLS (server, client, bridge)."""
