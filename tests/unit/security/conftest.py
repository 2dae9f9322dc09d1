"""Fixtures shared by the security unit modules: the fake introspection server."""

from tests.support.introspection import auth_server  # noqa: F401 (fixture)
