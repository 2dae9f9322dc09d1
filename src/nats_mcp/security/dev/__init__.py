"""Development credentials made on the command line: certificates and tokens (never on the request path)."""
