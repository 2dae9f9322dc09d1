"""The development-certificate files boundary: writing a set into DIR all or nothing, never replacing unless told to.

``write_bundle`` stages the set in a private temporary directory inside DIR and only then moves each file into
place, refusing to replace an existing file unless told to: a refusal or a failure leaves nothing behind. Private
keys are mode 0600 from creation, the directories made here 0700.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

from nats_mcp.security.dev.certs.spec import (
    CLIENTS_DIR,
    DevCertBundle,
    DevCertError,
    DevCertSpec,
    client_cert_path,
    layout,
)

_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK})


def conflicts(directory: Path, spec: DevCertSpec) -> list[Path]:
    """Files of the set that already exist in ``directory`` (symlinks included, dangling or not)."""
    return [directory / rel for rel in layout(spec) if os.path.lexists(directory / rel)]


def _write_staged(path: Path, data: bytes, private: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, 0o600 if private else 0o644)  # the umask may have narrowed a public file; never widen a key


def _place(staged: Path, target: Path, force: bool) -> None:
    """Move ``staged`` to ``target``: replacing it with ``force``, else only if nothing is there (atomically)."""
    if force:
        os.replace(staged, target)
        return
    try:
        os.link(staged, target)  # fails with EEXIST rather than replace: no window between check and write
    except OSError as exc:
        if isinstance(exc, FileExistsError) or exc.errno not in _NO_HARD_LINKS:
            raise
        if os.path.lexists(target):  # a filesystem without hard links: check, then rename
            raise FileExistsError(errno.EEXIST, "file exists", str(target)) from None
        os.replace(staged, target)
        return
    os.unlink(staged)


def write_bundle(directory: Path, bundle: DevCertBundle, force: bool = False) -> list[Path]:
    """Write the set into ``directory`` (created 0700 if missing); return the paths written, in layout order.

    Without ``force`` an existing file of the set is a ``DevCertError`` and nothing is written; on any failure the
    files already placed are removed again (and ``directory``, if this call created it and it is empty); with
    ``force`` the files they had replaced stay gone, a set that no longer works either way.
    """
    if os.path.lexists(directory) and not directory.is_dir():
        raise DevCertError(f"{directory} exists and is not a directory")
    if not force and (existing := conflicts(directory, bundle.spec)):
        shown = ", ".join(str(p.relative_to(directory)) for p in existing)
        raise DevCertError(
            f"{directory} already holds {shown}: nothing was written; pass --force to replace them "
            "(certificates of the old CA then stop working)"
        )

    created: list[Path] = []  # deepest first, to remove again on failure
    missing = directory
    while not os.path.lexists(missing):
        created.append(missing)
        missing = missing.parent
    for path in reversed(created):
        path.mkdir()  # parents as `mkdir -p` makes them; DIR itself private below
    if created:
        os.chmod(directory, 0o700)
    clients_dir = directory / CLIENTS_DIR
    if not clients_dir.exists():
        clients_dir.mkdir(mode=0o700)
        os.chmod(clients_dir, 0o700)
        created.insert(0, clients_dir)
    elif not clients_dir.is_dir():
        _remove_created(created)
        raise DevCertError(f"{clients_dir} exists and is not a directory")

    placed: list[Path] = []
    staging = Path(tempfile.mkdtemp(prefix=".certs-init-", dir=directory))  # same filesystem: renames are atomic
    try:
        (staging / CLIENTS_DIR).mkdir(mode=0o700)
        for f in bundle.files:
            _write_staged(staging / f.relpath, f.data, f.private)
        for f in bundle.files:
            target = directory / f.relpath
            try:
                _place(staging / f.relpath, target, force)
            except FileExistsError:
                raise DevCertError(f"{target} appeared while writing: nothing was written") from None
            placed.append(target)
    except BaseException:
        for path in placed:
            with contextlib.suppress(OSError):
                path.unlink()
        shutil.rmtree(staging, ignore_errors=True)
        _remove_created(created)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return placed


def _remove_created(created: list[Path]) -> None:
    """Remove the directories this call created (deepest first), where empty."""
    for path in created:
        with contextlib.suppress(OSError):
            path.rmdir()


def stale_client_files(directory: Path, spec: DevCertSpec) -> list[Path]:
    """Client certificates in ``directory/clients`` that this set did not make (issued by an earlier CA)."""
    clients_dir = directory / CLIENTS_DIR
    if not clients_dir.is_dir():
        return []
    ours = {Path(client_cert_path(c)).name for c in spec.clients}
    return sorted(p for p in clients_dir.glob("*.pem") if not p.name.endswith("-key.pem") and p.name not in ours)
