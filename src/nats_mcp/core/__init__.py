"""Shared foundations every layer may use: names, redaction, request context, small async and cache helpers."""
