"""Generated gRPC code for ``proto/nats_mcp/v1/transport.proto`` (do not edit; see ``..codegen``)."""
