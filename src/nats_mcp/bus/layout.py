"""The NATS naming boundary: every stream, bucket and subject name of the project comes from here.

Names are built only from tokens validated by :mod:`nats_mcp.names`, so a user-supplied value can
never add a subject token, a wildcard or a stream-name collision. Everything is namespaced: a
namespace isolates its channels, registry, inboxes (and later work queues and DLQ). The one shared
bucket, the directory, holds copies of the registry entries that other namespaces may see.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats_mcp.names import validate_guid, validate_name

PREFIX = "nmcp"
"""Subject prefix of every project subject (keeps us clear of other applications on a shared NATS)."""

DIRECTORY_BUCKET = f"{PREFIX}_directory"
"""Shared KV bucket: registry entries with scope public or personal, keyed ``<namespace>.<guid>``."""


@dataclass(frozen=True)
class Layout:
    """All NATS names of one namespace."""

    namespace: str

    def __post_init__(self) -> None:
        validate_name(self.namespace, "namespace")

    # -- channels --------------------------------------------------------------------------------
    def channel_stream(self, channel: str) -> str:
        return f"{PREFIX}_{self.namespace}_chan_{validate_name(channel, 'channel')}"

    def channel_subject(self, channel: str) -> str:
        return f"{PREFIX}.{self.namespace}.chan.{validate_name(channel, 'channel')}"

    # -- registry, identity ----------------------------------------------------------------------
    @property
    def registry_bucket(self) -> str:
        """KV: ``<guid>`` -> registry entry (JSON)."""
        return f"{PREFIX}_{self.namespace}_registry"

    @property
    def identity_bucket(self) -> str:
        """KV: ``lease.<guid>`` live-instance leases, ``handle.<guid>`` handles, ``lock.<name>`` locks."""
        return f"{PREFIX}_{self.namespace}_identity"

    @staticmethod
    def lease_key(guid: str) -> str:
        return f"lease.{validate_guid(guid)}"

    @staticmethod
    def handle_key(guid: str) -> str:
        return f"handle.{validate_guid(guid)}"

    @staticmethod
    def lock_key(name: str) -> str:
        return f"lock.{validate_name(name, 'lock name')}"

    def directory_key(self, guid: str) -> str:
        return f"{self.namespace}.{validate_guid(guid)}"

    # -- inboxes ---------------------------------------------------------------------------------
    @property
    def inbox_stream(self) -> str:
        """One stream per namespace holds every inbox; a DM is stored under its recipient's subject."""
        return f"{PREFIX}_{self.namespace}_inbox"

    @property
    def inbox_subjects(self) -> str:
        return f"{PREFIX}.{self.namespace}.inbox.*"

    def inbox_subject(self, guid: str) -> str:
        return f"{PREFIX}.{self.namespace}.inbox.{validate_guid(guid)}"


def parse_directory_key(key: str) -> tuple[str, str]:
    """``<namespace>.<guid>`` -> (namespace, guid), validated."""
    namespace, _, guid = key.partition(".")
    return validate_name(namespace, "namespace"), validate_guid(guid)
