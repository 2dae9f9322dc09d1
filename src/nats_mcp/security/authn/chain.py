"""The authentication-routing boundary: which provider checks the credentials a transport hands over.

One credential decides, in this order: an API key (``X-API-Key``, or a bearer that
:func:`~nats_mcp.security.authn.bearer.classify` calls one) goes to the API-key store; a bearer JWT whose
(unverified) ``iss`` names a trusted issuer goes to the JWT verifier; any other bearer goes to token introspection
when configured (else it is refused); a verified client certificate goes to mTLS; nothing is
``missing_credentials``. A credential of a disabled kind is refused, never passed to another provider. Whatever a
provider raises, only :class:`AuthenticationError` leaves here, and no credential is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from nats_mcp.config.settings import Settings
from nats_mcp.core.redact import redact
from nats_mcp.security.authn import Credentials, Provider
from nats_mcp.security.authn.apikeys import ApiKeys
from nats_mcp.security.authn.bearer import classify
from nats_mcp.security.authn.introspection import Introspector
from nats_mcp.security.authn.jwt import JwtVerifier, unverified_issuer
from nats_mcp.security.authn.mtls import MtlsAuthenticator
from nats_mcp.security.errors import AuthenticationError
from nats_mcp.security.principal import Principal

if TYPE_CHECKING:
    from nats_mcp.bus.connection import NatsConnection

log = logging.getLogger("nats_mcp.security.authn")

Route = Literal["apikey", "jwt", "introspection", "mtls"]


class Authenticator:
    """Routes credentials to the one provider that can check them (see the module docstring)."""

    def __init__(
        self,
        *,
        jwt: JwtVerifier | None = None,
        introspection: Introspector | None = None,
        apikeys: ApiKeys | None = None,
        mtls: MtlsAuthenticator | None = None,
    ) -> None:
        self.jwt = jwt
        self.introspection = introspection
        self.apikeys = apikeys
        self.mtls = mtls

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        conn: NatsConnection | None = None,
        *,
        dev_audiences: Iterable[str] = (),
        mtls: bool = True,
    ) -> Authenticator:
        """Every provider the settings enable. API keys need ``conn`` (and ``security.api_keys``); JWT needs
        ``security.jwt_issuers`` or ``security.dev_tokens``; ``dev_audiences`` (the transport's own resource URL) is
        what a dev token may name besides the local audience, and the audience an introspected token must name
        unless ``security.introspection.audience`` is set. ValueError (naming the setting) when a provider is
        misconfigured."""
        sec = settings.security
        dev_audiences = tuple(dev_audiences)  # read twice
        verifier = None
        if sec.jwt_issuers or sec.dev_tokens:
            verifier = JwtVerifier.from_settings(settings, dev_audiences=dev_audiences)
        return cls(
            jwt=verifier,
            introspection=Introspector.from_settings(settings, resource_urls=dev_audiences),
            apikeys=ApiKeys(conn) if sec.api_keys and conn is not None else None,
            mtls=MtlsAuthenticator() if mtls else None,
        )

    def route(self, credentials: Credentials) -> tuple[Route, Provider]:
        """The provider for these credentials; AuthenticationError when none may check them."""
        bearer = credentials.bearer or None
        if credentials.api_key or classify(bearer) == "api_key":
            if self.apikeys is None:
                raise AuthenticationError("missing_credentials", "API keys are not accepted here")
            return "apikey", self.apikeys
        if bearer is not None:
            issuer = unverified_issuer(bearer)
            if self.jwt is not None and self.jwt.trusts(issuer):
                return "jwt", self.jwt
            if self.introspection is not None:
                return "introspection", self.introspection
            if issuer is not None:
                if self.jwt is None:
                    raise AuthenticationError("bad_issuer", "bearer JWTs are not accepted here")
                return "jwt", self.jwt  # refuses it as bad_issuer, in one place
            raise AuthenticationError("malformed", "an opaque bearer token and no introspection configured")
        if credentials.peer_cert:
            if self.mtls is None:
                raise AuthenticationError("missing_credentials", "client certificates are not accepted here")
            return "mtls", self.mtls
        raise AuthenticationError("missing_credentials")

    async def authenticate(self, credentials: Credentials) -> Principal:
        """The principal behind ``credentials``; only AuthenticationError (with a reason code) is raised."""
        route, provider = self.route(credentials)
        if route == "apikey" and not credentials.api_key:
            credentials = replace(credentials, api_key=credentials.bearer, bearer=None)
        try:
            return await provider.authenticate(credentials)
        except AuthenticationError:
            raise
        except Exception as exc:
            secrets = [s for s in (credentials.bearer, credentials.api_key) if s]
            text = redact(f"{type(exc).__name__}: {exc}", secrets)
            log.error("%s authentication failed unexpectedly: %s", route, text)
            raise AuthenticationError("unavailable", f"{route} provider error") from None

    async def aclose(self) -> None:
        """Close the HTTP clients of the JWKS caches and the introspection client, and the API keys' watch."""
        if self.apikeys is not None:
            await self.apikeys.aclose()
        if self.jwt is not None:
            await self.jwt.aclose()
        if self.introspection is not None:
            await self.introspection.aclose()


__all__ = ["Authenticator", "Route"]
