"""The stdio front: answers a session's handshake from the start-up cache while the SDK and the server load.

``nats-mcp serve`` spends most of its start-up importing the SDK (~500 pydantic models of two protocol revisions)
and building the server. The answers to the first messages of a session (``initialize``, ``server/discover``,
``tools/list``, ``ping``) do not depend on any of it: transports/startup_cache.py has them as the SDK wrote them
in an earlier run with the same code, settings and policy. :class:`Front` answers them on a thread, with the
standard library only, until the server is ready (:meth:`Front.handover`) or a message arrives that it does not
answer exactly as the SDK would (then it stops reading and that message waits for the SDK): any other method, a
shape it does not know (a cursor, a ``_meta`` key, a capability it does not check), a line that is not JSON.

What the SDK needs to be where the front left off (:class:`Opening`): the bytes read and not answered, first; on
the handshake era the recorded ``initialize`` and ``notifications/initialized`` lines before them, replayed so that
the SDK's connection commits the same negotiation (its second answer to that ``initialize`` is dropped:
transports/stdio_handover.py); on the 2026-07-28 era (no connection state, every request carries its envelope)
only the era itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import stat
import sys
import threading
from dataclasses import dataclass
from typing import Any

from nats_mcp.transports.startup_cache import Entry

log = logging.getLogger("nats_mcp.transports.stdio")

PROTOCOL_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CLIENT_INFO_KEY = "io.modelcontextprotocol/clientInfo"
CLIENT_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
"""The 2026-07-28 request envelope's ``_meta`` keys (mcp_types; a unit test compares)."""
_ENVELOPE_KEYS = {PROTOCOL_VERSION_KEY, CLIENT_INFO_KEY, CLIENT_CAPABILITIES_KEY}

_CAPABILITY_KEYS = {"roots": {"listChanged"}, "sampling": {"context", "tools"}, "elicitation": {"form", "url"}}
"""Client capabilities whose shape the front checks itself; ``experimental`` is an object of objects and
``extensions`` must be empty. Anything else (``tasks``, a key of a later revision) goes to the SDK."""
_IMPLEMENTATION_KEYS = {"name", "version", "title", "description", "websiteUrl"}


@dataclass(frozen=True)
class Opening:
    """Where the front left the session: what the SDK reads first, whose answer it drops, which era it serves."""

    lead: bytes = b""
    drop_reply_to: int | str | None = None
    modern: bool = False
    answered: int = 0


def pipes_usable() -> bool:
    """The front reads and writes the descriptors directly: pipes and sockets only (as transports/stdio.py)."""
    try:
        modes = [os.fstat(fd).st_mode for fd in (0, 1)]
    except OSError:
        return False
    return all(stat.S_ISFIFO(m) or stat.S_ISSOCK(m) for m in modes) and sys.platform != "win32"


def _request_id(message: dict[str, Any]) -> int | str | None:
    rid = message.get("id")
    return rid if isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool)) else None


def _strings(value: Any, allowed: set[str], required: tuple[str, ...]) -> bool:
    return (
        isinstance(value, dict)
        and set(value) <= allowed
        and all(k in value for k in required)
        and all(isinstance(v, str) for v in value.values())
    )


def _capabilities(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    for name, body in value.items():
        if not isinstance(body, dict):
            return False
        if name == "experimental":
            if not all(isinstance(v, dict) for v in body.values()):
                return False
        elif name == "extensions":  # a declared extension may change what the SDK answers: its to answer
            if body:
                return False
        elif name == "roots":
            if not set(body) <= _CAPABILITY_KEYS["roots"] or not all(isinstance(v, bool) for v in body.values()):
                return False
        elif name in _CAPABILITY_KEYS:
            if not set(body) <= _CAPABILITY_KEYS[name] or not all(v == {} for v in body.values()):
                return False
        else:
            return False
    return True


def _no_params(message: dict[str, Any]) -> bool:
    return message.get("params") in (None, {})


class Front:
    """Answers the handshake from ``entry`` on a thread (:meth:`start`) until :meth:`handover`."""

    def __init__(self, entry: Entry, in_fd: int = 0, out_fd: int = 1) -> None:
        self._entry = entry
        self._in, self._out = in_fd, out_fd
        self._wake_r, self._wake_w = os.pipe()
        self._buffer = bytearray()
        self._replay: list[bytes] = []
        self._init_id: int | str | None = None
        self._version: str | None = None  # the handshake revision negotiated
        self._initialized = False
        self._modern = False
        self._answered = 0
        self._thread = threading.Thread(target=self._run, name="stdio-front", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def handover(self) -> Opening:
        """Stop at a message boundary and say where the session is (a line being answered is finished first)."""
        os.write(self._wake_w, b"x")
        self._thread.join()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        lead = b"".join(self._replay) + bytes(self._buffer)
        return Opening(lead, self._init_id, self._modern, self._answered)

    # ---- the thread ----------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            line = self._next_line()
            if line is None:
                return
            try:
                answered = self._answer(line)
            except Exception:  # the client went away (the SDK sees the same), or a bug: the SDK answers the line
                log.debug("stdio front: a line left to the SDK after an error", exc_info=True)
                answered = False
            if not answered:
                self._buffer[0:0] = line  # the SDK reads it first
                return
            self._answered += 1

    def _next_line(self) -> bytes | None:
        """The next whole line, or None on a handover, at the end of input, or while a line is over 1 MiB."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > 1 << 20:  # a long line (a big tool call) is the SDK's to read
                return None
            ready, _, _ = select.select([self._in, self._wake_r], [], [])
            if self._in not in ready:  # what the client has sent is read first: a hand-over waits for a quiet pipe
                return None
            data = os.read(self._in, 65536)
            if not data:
                return None
            self._buffer += data

    def _answer(self, line: bytes) -> bool:
        """Answer ``line`` if it is one the cache answers exactly; False leaves it (and all after it) to the SDK."""
        try:
            message = json.loads(line)
        except ValueError:
            return False
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return False
        method = message.get("method")
        if "id" not in message:  # a notification
            if method == "notifications/initialized" and self._version is not None and _no_params(message):
                self._initialized = True
                self._replay.append(line)
                return True
            return False
        rid = _request_id(message)
        if rid is None or not isinstance(method, str) or set(message) - {"params"} != {"jsonrpc", "id", "method"}:
            return False
        if self._modern or (self._version is None and method != "initialize" and self._enveloped(message)):
            return self._answer_modern(rid, method, message)
        return self._answer_handshake(rid, method, message, line)

    @staticmethod
    def _enveloped(message: dict[str, Any]) -> bool:
        params = message.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        return isinstance(meta, dict) and PROTOCOL_VERSION_KEY in meta

    def _answer_handshake(self, rid: int | str, method: str, message: dict[str, Any], line: bytes) -> bool:
        entry = self._entry
        if method == "initialize" and self._version is None:
            params = message.get("params")
            if not (
                isinstance(params, dict)
                and set(params) == {"protocolVersion", "capabilities", "clientInfo"}
                and isinstance(params["protocolVersion"], str)
                and _capabilities(params["capabilities"])
                and _strings(params["clientInfo"], _IMPLEMENTATION_KEYS, ("name", "version"))
            ):
                return False
            version = entry.negotiate(params["protocolVersion"])
            text = entry.initialize.get(version)
            if text is None:
                return False
            self._reply(rid, text)
            self._version, self._init_id = version, rid
            self._replay.append(line)
            return True
        if self._version is None or not self._initialized or not _no_params(message):
            return False
        text = entry.tools_list.get(self._version) if method == "tools/list" else None
        if method == "ping":
            text = entry.ping.get(self._version)
        if text is None:
            return False
        self._reply(rid, text)
        return True

    def _answer_modern(self, rid: int | str, method: str, message: dict[str, Any]) -> bool:
        params = message.get("params")
        if not isinstance(params, dict) or set(params) != {"_meta"}:
            return False
        meta = params["_meta"]
        if not isinstance(meta, dict) or not set(meta) <= _ENVELOPE_KEYS:
            return False
        version = meta.get(PROTOCOL_VERSION_KEY)
        if version not in self._entry.modern_versions or not _capabilities(meta.get(CLIENT_CAPABILITIES_KEY)):
            return False
        if CLIENT_INFO_KEY in meta and not _strings(meta[CLIENT_INFO_KEY], _IMPLEMENTATION_KEYS, ("name", "version")):
            return False
        answers = {"server/discover": self._entry.discover, "tools/list": self._entry.tools_list}.get(method)
        text = answers.get(version) if answers is not None else None
        if text is None:
            return False
        self._reply(rid, text)
        self._modern = True
        return True

    def _reply(self, rid: int | str, result: str) -> None:
        """One response line, laid out as the SDK's writer lays it out (``model_dump_json``: compact, UTF-8)."""
        head = '{"jsonrpc":"2.0","id":' + json.dumps(rid, ensure_ascii=False) + ',"result":'
        data = (head + result + "}\n").encode("utf-8")
        while data:
            written = os.write(self._out, data)
            data = data[written:]
