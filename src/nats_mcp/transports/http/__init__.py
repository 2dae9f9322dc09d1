"""Streamable HTTP: the app, protocol checks, session bounds and the resumable event store."""
