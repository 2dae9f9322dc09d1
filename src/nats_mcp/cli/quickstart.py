"""`serve --quickstart`'s boundary: the development API key kept across restarts, local-team limits, the banner."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from nats_mcp.config.loader import LoadedSettings
from nats_mcp.config.security import RateSettings
from nats_mcp.config.settings import Settings
from nats_mcp.security.authn.apikeys import ApiKeyError, ApiKeys, parse_key
from nats_mcp.security.errors import AuthenticationError

KEY_NAME = "quickstart"
KEY_FILE = "quickstart.key"
INSPECTOR_VERSION = "2.12.0"  # the version scripts/node22 installs and tests/e2e/test_inspector_http.py runs
INSPECTOR_NODE = "22.19"  # its package.json's engines.node; older Node makes npx fall back to a release without --cli

# Every agent of a local team shares the one key (its name is the principal) and the one loopback address: the
# general defaults (20 calls/s per principal, 50 per address) refused 150 of 200 calls of a plain loop of one
# agent. These fit tens of local agents and still stop a runaway loop.
LOCAL_TEAM_PER_KEY = RateSettings(rate_per_s=200.0, burst=400)
LOCAL_TEAM_PER_ADDRESS = RateSettings(rate_per_s=1000.0, burst=2000)


def key_file(settings: Settings) -> Path:
    """Where the development key lives: the data directory of the embedded NATS (0600 file)."""
    return settings.embedded.resolved_data_dir / KEY_FILE


def with_local_team_limits(loaded: LoadedSettings) -> Settings:
    """The settings with the local-team rate limits, except where the user set a limit (file, env or flag)."""
    settings = loaded.settings
    security = settings.security
    changes: dict[str, RateSettings] = {}
    for field, team in (("rate_per_principal", LOCAL_TEAM_PER_KEY), ("rate_per_address", LOCAL_TEAM_PER_ADDRESS)):
        if all(loaded.source_of(f"security.{field}.{leaf}") == "default" for leaf in ("rate_per_s", "burst")):
            changes[field] = team
    return settings.model_copy(update={"security": security.model_copy(update=changes)})


@dataclass(frozen=True)
class DevKey:
    key: str
    key_id: str
    reused: bool
    path: Path


async def dev_key(keys: ApiKeys, path: Path, *, rotate: bool = False) -> DevKey:
    """The key kept in ``path`` if it still verifies (unless ``rotate``), else a new one written there.

    A rotation revokes the key it replaces. A key that no longer verifies (revoked, expired, or made on another
    NATS) is replaced silently: the banner says the key is new.
    """
    old = _read(path)
    if old is not None and not rotate:
        with contextlib.suppress(AuthenticationError):
            principal = await keys.verify(old)
            if principal.key_id is not None:
                return DevKey(old, principal.key_id, True, path)
    if old is not None and rotate and (parsed := parse_key(old)) is not None:
        with contextlib.suppress(ApiKeyError):  # a key unknown to this NATS has nothing to revoke
            await keys.revoke(parsed[0])
    key, record = await keys.create(KEY_NAME, ["agent"])
    _write_private(path, key + "\n")
    return DevKey(key, record.id, False, path)


def _read(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, PermissionError, IsADirectoryError, UnicodeDecodeError):
        return None
    return text if parse_key(text) is not None else None


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only; a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def self_command() -> str:
    """How to run this program again: ``nats-mcp`` when that is on PATH, else the path it was started by."""
    started = Path(sys.argv[0])
    if started.name != "nats-mcp":  # run another way (python -m): the command's name is all we can say
        return "nats-mcp"
    found = shutil.which("nats-mcp")
    return "nats-mcp" if found is not None and Path(found).resolve() == started.resolve() else str(started.resolve())


def banner(url: str, dev: DevKey, settings: Settings) -> str:
    """What `make serve` prints: the URL, the key, the limits and the client configuration to paste."""
    key = dev.key
    per_key, per_address = settings.security.rate_per_principal, settings.security.rate_per_address
    config = {"mcpServers": {"nats-mcp": {"type": "http", "url": url, "headers": {"Authorization": f"Bearer {key}"}}}}
    kept = "kept from the last run" if dev.reused else "new"
    header = f'--header "Authorization: Bearer {key}"'
    return (
        f"\nMCP server: {url}\n"
        f"Development API key ({kept}; stored in {dev.path}, reused at every start; "
        f"--rotate-key makes a new one and revokes this): {key}\n"
        f"Rate limits: {per_key.rate_per_s:g} calls/s with bursts of {per_key.burst} for the key, shared by every "
        f"agent that uses it (security.rate_per_principal); {per_address.rate_per_s:g} calls/s per client address "
        f"(security.rate_per_address)\n\n"
        f"Claude Code:\n  claude mcp add --transport http nats-mcp {url} {header}\n\n"
        f"MCP client JSON:\n{json.dumps(config, indent=2)}\n\n"
        f"MCP Inspector (Node >= {INSPECTOR_NODE}; in this repository `scripts/node22` installs one):\n"
        f"  npx -y @modelcontextprotocol/inspector@{INSPECTOR_VERSION} --cli {url} --transport http {header} "
        f"--method tools/list\n\n"
        f"Ctrl-C stops the server. The key stays valid, and the embedded NATS (if this server started it) keeps "
        f"running for other local agents: `{self_command()} nats stop` stops it.\n"
    )


__all__ = ["KEY_FILE", "DevKey", "banner", "dev_key", "key_file", "with_local_team_limits"]
