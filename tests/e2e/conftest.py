"""Fixtures shared by the e2e modules: the TypeScript SDK client and the fake introspection server."""

from tests.support.introspection import auth_server  # noqa: F401 (fixture)
from tests.support.ts_client import ts_client  # noqa: F401 (fixture)
