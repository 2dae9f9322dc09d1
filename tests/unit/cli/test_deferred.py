"""The start-up deferral boundary (cli/deferred.py): a deferred package's submodules import without its ``__init__``,
and the first name the package defines runs it, so code that uses the package sees no difference."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCENARIO = textwrap.dedent(
    """
    import json, sys
    from nats_mcp.cli.deferred import DeferredPackage, defer_packages

    out = {}
    import json as already
    defer_packages(("mcp", "mcp.server", "aiohttp", "json", "no_such_package_xyz", "nats_mcp.cli.deferred"))
    out["already_imported_left_alone"] = sys.modules["json"] is already and type(already) is not DeferredPackage
    out["missing_left_out"] = "no_such_package_xyz" not in sys.modules
    out["module_not_package_left_out"] = type(sys.modules["nats_mcp.cli.deferred"]) is not DeferredPackage

    from mcp.server.lowlevel import Server
    from mcp.server.stdio import stdio_server
    import nats
    out["server_without_sdk_init"] = {
        "mcp": type(sys.modules["mcp"]).__name__,
        "mcp.server": type(sys.modules["mcp.server"]).__name__,
        "mcp.client": "mcp.client" in sys.modules,
        "mcp.server.mcpserver": "mcp.server.mcpserver" in sys.modules,
        "aiohttp.client": "aiohttp.client" in sys.modules,
    }

    import aiohttp
    out["dunder_runs_init"] = isinstance(aiohttp.__version__, str) and "aiohttp.client" in sys.modules
    import mcp
    from mcp import Client
    from mcp.client.client import Client as RealClient
    from mcp.server import MCPServer, Server as Reexported
    out["first_use_runs_init"] = {
        "mcp": type(sys.modules["mcp"]).__name__,
        "client": Client is RealClient and mcp.Client is RealClient,
        "mcpserver": MCPServer.__name__,
        "same_server": Reexported is Server,
        "aiohttp": aiohttp.ClientSession.__module__,
        "aiohttp_type": type(aiohttp).__name__,
    }
    try:
        mcp.no_such_name_xyz
    except AttributeError:
        out["unknown_name"] = "AttributeError"
    print(json.dumps(out))
    """
)


def test_deferred_packages_initialise_on_first_use() -> None:
    proc = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["already_imported_left_alone"] and out["missing_left_out"] and out["module_not_package_left_out"]
    # The stdio server's SDK modules (and nats-py) import while the packages' __init__ have not run.
    assert out["server_without_sdk_init"] == {
        "mcp": "DeferredPackage",
        "mcp.server": "DeferredPackage",
        "mcp.client": False,
        "mcp.server.mcpserver": False,
        "aiohttp.client": False,
    }
    # Asking a package for a name it defines runs its __init__: the names are the real ones, the module plain.
    assert out["first_use_runs_init"] == {
        "mcp": "module",
        "client": True,
        "mcpserver": "MCPServer",
        "same_server": True,
        "aiohttp": "aiohttp.client",
        "aiohttp_type": "module",
    }
    assert out["dunder_runs_init"]  # a dunder the package defines (__version__) is a use too
    assert out["unknown_name"] == "AttributeError"
