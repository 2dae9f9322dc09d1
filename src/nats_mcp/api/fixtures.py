"""Test-fixtures boundary: a test run's fixture tools, prompts and resources, loaded only from a checkout's tests/.

The MCP conformance suite calls tools, prompts and resources of its own (``test_simple_text``, ``test://static-text``,
...). To run every scenario against our real stack (transport, guard, audit), a test names a fixtures module in
:data:`ENV`; :func:`load_fixtures` loads it only when all of these hold, and otherwise logs a warning and serves
nothing extra:

- nats_mcp runs from a source checkout (``<root>/src/nats_mcp``): a wheel in site-packages never does;
- the name is ``tests.<...>`` and the ``tests`` package found on the import path is ``<root>/tests`` of that same
  checkout (checked before anything is imported): a stray ``tests`` package elsewhere is never loaded;
- the module imports (the running process has the checkout root on its path: only the test sets that).

So configuration alone (settings, the environment of an installed package) cannot switch it on. What is loaded is
served through the same guard as every tool: each fixture tool, prompt and the fixture resources are authorized
by their own names (:attr:`Fixtures.resource_tool` for resources), limited and audited.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import mcp_types as types
from mcp.server.context import ServerRequestContext

import nats_mcp

log = logging.getLogger("nats_mcp.api.fixtures")

ENV = "NATS_MCP_TEST_FIXTURES"
"""The dotted name of a fixtures module under the checkout's ``tests/`` (it exports ``FIXTURES``)."""


class Fixtures(Protocol):
    """What a fixtures module serves; names are authorized by the policy like tool names."""

    scheme: str
    """The URI prefix of its resources (``test://``): reads and subscriptions of these URIs are the fixtures'."""
    resource_tool: str
    """The name reads and subscriptions of its resources are authorized and audited as."""
    tools: Sequence[types.Tool]
    prompts: Sequence[types.Prompt]
    resources: Sequence[types.Resource]
    templates: Sequence[types.ResourceTemplate]

    async def call_tool(
        self, ctx: ServerRequestContext[Any], name: str, arguments: Mapping[str, Any]
    ) -> types.CallToolResult: ...

    async def get_prompt(self, name: str, arguments: Mapping[str, str]) -> types.GetPromptResult: ...

    def complete(self, prompt: str, argument: str, value: str) -> list[str]: ...

    async def read_resource(self, uri: str) -> types.ReadResourceResult: ...


def _refuse(name: str, why: str) -> None:
    log.warning("%s=%s ignored: %s (test fixtures exist only in a source checkout's tests/)", ENV, name, why)


def load_fixtures(environ: Mapping[str, str] | None = None, package_file: str | None = None) -> Fixtures | None:
    """The fixtures :data:`ENV` names, if this process may serve them (see the module docstring); else None."""
    name = (os.environ if environ is None else environ).get(ENV, "")
    if not name:
        return None
    package = Path(package_file or nats_mcp.__file__).resolve().parent
    if package.parent.name != "src":
        _refuse(name, f"nats_mcp runs from {package}, not from a source checkout")
        return None
    tests_dir = package.parent.parent / "tests"
    if not name.startswith("tests.") or not all(part.isidentifier() for part in name.split(".")):
        _refuse(name, "not a module of the tests package")
        return None
    try:  # the top-level package is located without running it: only the checkout's own tests/ is imported
        top = importlib.util.find_spec("tests")
    except (ImportError, ValueError):
        top = None
    if top is None or top.origin is None or Path(top.origin).resolve().parent != tests_dir:
        _refuse(name, f"the tests package is not importable from {tests_dir}")
        return None
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        _refuse(name, f"cannot import it: {exc}")
        return None
    origin = getattr(module, "__file__", None)
    fixtures = getattr(module, "FIXTURES", None)
    if origin is None or not Path(origin).resolve().is_relative_to(tests_dir) or fixtures is None:
        _refuse(name, f"not a fixtures module of {tests_dir}")
        return None
    log.warning("serving the test fixtures of %s: a test run, never a deployment", name)
    return fixtures  # type: ignore[no-any-return]


Gate = Callable[[ServerRequestContext[Any], str, dict[str, Any], Callable[[], Awaitable[Any]]], Awaitable[Any]]


def fixture_handlers(
    fixtures: Fixtures,
    prompts: dict[str, types.Prompt],
    handlers: dict[str, Any],
    gate: Gate,
    may_see: Callable[[str], bool],
) -> dict[str, Any]:
    """The prompt, completion and resource handlers with a test run's fixtures beside ours, each through ``gate``
    (limited, authorized by the fixture's own name, audited) like the real ones."""
    list_prompts, get_prompt = handlers["on_list_prompts"], handlers["on_get_prompt"]
    complete = handlers["on_completion"]
    resource_tool, scheme = fixtures.resource_tool, fixtures.scheme

    def fixture_uri(uri: object) -> bool:
        return isinstance(uri, str) and uri.startswith(scheme)

    async def on_list_prompts(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        ours: types.ListPromptsResult = await list_prompts(ctx, params)
        return types.ListPromptsResult(prompts=[*ours.prompts, *(p for n, p in prompts.items() if may_see(n))])

    async def on_get_prompt(
        ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        if params.name not in prompts:
            return await get_prompt(ctx, params)  # type: ignore[no-any-return]
        args = dict(params.arguments or {})
        result: types.GetPromptResult = await gate(
            ctx, params.name, {"arguments": args}, lambda: fixtures.get_prompt(params.name, args)
        )
        return result

    async def on_completion(
        ctx: ServerRequestContext[Any], params: types.CompleteRequestParams
    ) -> types.CompleteResult:
        ref, argument = params.ref, params.argument
        if not isinstance(ref, types.PromptReference) or ref.name not in prompts:
            return await complete(ctx, params)  # type: ignore[no-any-return]

        async def run() -> types.CompleteResult:
            values = fixtures.complete(ref.name, argument.name, argument.value)
            return types.CompleteResult(completion=types.Completion(values=values, total=len(values), has_more=False))

        result: types.CompleteResult = await gate(ctx, ref.name, {"argument": argument.name[:64]}, run)
        return result

    out: dict[str, Any] = {
        "on_list_prompts": on_list_prompts,
        "on_get_prompt": on_get_prompt,
        "on_completion": on_completion,
    }
    if "on_read_resource" not in handlers:
        return out
    list_resources, list_templates = handlers["on_list_resources"], handlers["on_list_resource_templates"]
    read, subscribe, unsubscribe = (
        handlers["on_read_resource"],
        handlers["on_subscribe_resource"],
        handlers["on_unsubscribe_resource"],
    )

    async def on_list_resources(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        ours: types.ListResourcesResult = await list_resources(ctx, params)
        extra = fixtures.resources if may_see(resource_tool) else ()
        return types.ListResourcesResult(resources=[*ours.resources, *extra])

    async def on_list_templates(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        ours: types.ListResourceTemplatesResult = await list_templates(ctx, params)
        extra = fixtures.templates if may_see(resource_tool) else ()
        return types.ListResourceTemplatesResult(resource_templates=[*ours.resource_templates, *extra])

    async def on_read(
        ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        if not fixture_uri(params.uri):
            return await read(ctx, params)  # type: ignore[no-any-return]
        result: types.ReadResourceResult = await gate(
            ctx, resource_tool, {"uri": params.uri}, lambda: fixtures.read_resource(params.uri)
        )
        return result

    async def nothing() -> types.EmptyResult:
        return types.EmptyResult()

    async def on_subscribe(ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams) -> types.EmptyResult:
        if not fixture_uri(params.uri):
            return await subscribe(ctx, params)  # type: ignore[no-any-return]
        result: types.EmptyResult = await gate(ctx, resource_tool, {"uri": params.uri, "subscribe": True}, nothing)
        return result

    async def on_unsubscribe(
        ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        if not fixture_uri(params.uri):
            return await unsubscribe(ctx, params)  # type: ignore[no-any-return]
        result: types.EmptyResult = await gate(ctx, resource_tool, {"uri": params.uri, "subscribe": False}, nothing)
        return result

    out.update(
        on_list_resources=on_list_resources,
        on_list_resource_templates=on_list_templates,
        on_read_resource=on_read,
        on_subscribe_resource=on_subscribe,
        on_unsubscribe_resource=on_unsubscribe,
    )
    return out
