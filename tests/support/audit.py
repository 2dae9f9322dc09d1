"""The audit trail as the tests read it: audit records from a serve log and the wait for one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.natsserver import wait_for


def audit_records(trail: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in trail.read_text().splitlines()] if trail.exists() else []


async def audited(trail: Path, what: str, **fields: Any) -> dict[str, Any]:
    """The first audit record whose fields (``key_id`` matched on the principal) have these values."""
    key_id = fields.pop("key_id", None)

    def find() -> dict[str, Any] | None:
        for record in audit_records(trail):
            if all(record.get(k) == v for k, v in fields.items()) and (
                key_id is None or (record.get("principal") or {}).get("key_id") == key_id
            ):
                return record
        return None

    found: dict[str, Any] = await wait_for(find, 15, message=f"no audit record of {what}: {fields}")
    return found
