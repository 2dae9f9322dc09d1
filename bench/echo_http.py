"""Baseline boundary of the HTTP benchmarks: bench/echo_server.py's echo tool over streamable HTTP, doing nothing.

The same SDK, low-level Server, ``Server.streamable_http_app`` defaults (stateful sessions, SSE responses)
and uvicorn setup (h11, the default asyncio loop, no access log) as ``nats-mcp serve --transport http``, with
no NATS, no guard and no audit behind the tool. uvicorn binds the port itself, as the SDK's
``run("streamable-http")`` does (asyncio then sets TCP_NODELAY on each connection); ``--prebound`` instead
binds a socket here and hands it over, exactly as src/nats_mcp/cli/serve_cmd.py does.

    python bench/echo_http.py --port-file F [--port 0] [--token T] [--prebound]

``--port-file``: write the bound port there once listening. ``--token``: require ``Authorization: Bearer T``
through the SDK's ``TokenVerifier`` seam (a static token, compared in constant time) with the same
``AuthSettings`` shape nats-mcp uses (RFC 9728 metadata, resource validation on); without it, no authentication.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import socket
from pathlib import Path

import uvicorn
from echo_server import build_server  # bench/ is on sys.path: this file runs as a script
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl

HOST = "127.0.0.1"
PATH = "/mcp"


class StaticTokenVerifier:
    """The SDK's ``TokenVerifier`` protocol over one fixed token: what a verifier costs when it does no work."""

    def __init__(self, token: str, resource: str) -> None:
        self.token = token
        self.resource = resource

    async def verify_token(self, token: str) -> AccessToken | None:
        if not hmac.compare_digest(token.encode(), self.token.encode()):
            return None
        return AccessToken(
            token=token, client_id="bench", scopes=[], expires_at=None, resource=self.resource, subject="bench"
        )


async def serve(port: int, port_file: Path, token: str | None, prebound: bool) -> None:
    sock = None
    if prebound:  # as serve_cmd.py binds: proto 0, so asyncio leaves Nagle on for the accepted connections
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        port = int(sock.getsockname()[1])
    url = f"http://{HOST}:{port}{PATH}"  # with port 0, the resource URL names port 0: nothing here compares it
    auth = verifier = None
    if token is not None:
        auth = AuthSettings(
            issuer_url=AnyHttpUrl(url), resource_server_url=AnyHttpUrl(url), validate_token_resource=True
        )
        verifier = StaticTokenVerifier(token, url)
    app = build_server().streamable_http_app(streamable_http_path=PATH, host=HOST, auth=auth, token_verifier=verifier)
    config = uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock] if sock is not None else None))
    while not server.started:
        if task.done():
            await task  # start-up failed: raise why
            return
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    await asyncio.to_thread(port_file.write_text, f"{bound}\n")  # once listening: a reader can connect at once
    await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="port to bind on 127.0.0.1 (0: any free one)")
    parser.add_argument("--port-file", type=Path, required=True, help="write the bound port here once listening")
    parser.add_argument("--token", help="require this bearer token (default: no authentication)")
    parser.add_argument(
        "--prebound",
        action="store_true",
        help="bind the listening socket here and hand it to uvicorn, as serve_cmd.py does",
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.port_file, args.token, args.prebound))


if __name__ == "__main__":
    main()
