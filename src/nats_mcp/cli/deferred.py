"""Start-up boundary of the `nats-mcp` process: third-party package initialisers run on first use, not on import.

``import mcp.server.lowlevel.server`` runs ``mcp/__init__.py`` and ``mcp/server/__init__.py`` first, and those import
the SDK's client, its high-level ``MCPServer``, httpx and more that a stdio server never uses (~0.3 s of CPU).
nats-py imports aiohttp (~0.15 s) at the top of ``nats.aio.transport`` and touches it only for a websocket URL.
:func:`defer_packages` puts each of these packages in ``sys.modules`` unexecuted: its submodules import as usual,
and the first attribute the package itself would have defined (``mcp.Client``, ``aiohttp.ClientSession``) runs its
``__init__`` then, so nothing that uses them behaves differently. Called by the console script only (``run``): a
process that imports ``nats_mcp`` as a library is left as it is.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
from typing import Any

DEFERRED = ("mcp", "mcp.server", "aiohttp")
"""Packages whose ``__init__`` waits for first use (a parent before its subpackage)."""

_PROBES = frozenset({"__path__", "__file__", "__cached__", "__loader__", "__package__", "__spec__", "__wrapped__"})
"""Names whose absence answers the asker: any other (``__version__``, ``__all__`` too) runs the ``__init__``."""

_lock = threading.RLock()
_loading: set[str] = set()


class DeferredPackage(types.ModuleType):
    """A package in ``sys.modules`` whose ``__init__`` has not run yet (``__path__``, ``__spec__`` are set)."""

    def __getattr__(self, name: str) -> Any:
        if name in _PROBES:
            raise AttributeError(name)  # asked by the import system and introspection, not a use of the package
        spec = self.__spec__
        if spec is None or spec.loader is None:  # pragma: no cover - defer_packages installs only specs with one
            raise AttributeError(name)
        with _lock:
            if type(self) is DeferredPackage:
                if spec.name in _loading:
                    # Its own __init__ asks (``from . import types``): not there yet, so the import system imports
                    # the submodule, as for any package being initialised.
                    raise AttributeError(name)
                _loading.add(spec.name)
                try:
                    spec.loader.exec_module(self)
                finally:
                    _loading.discard(spec.name)
                object.__setattr__(self, "__class__", types.ModuleType)  # a plain module from now on
        return getattr(self, name)


def defer_packages(names: tuple[str, ...] = DEFERRED) -> None:
    """Put each package of ``names`` in ``sys.modules`` with its ``__init__`` deferred; one already imported, not
    installed or not a package is left to the normal import."""
    for name in names:
        if name in sys.modules:
            continue
        parent, _, child = name.rpartition(".")
        if parent and not isinstance(sys.modules.get(parent), types.ModuleType):
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            continue
        module = importlib.util.module_from_spec(spec)
        object.__setattr__(module, "__class__", DeferredPackage)
        sys.modules[name] = module
        if parent:
            setattr(sys.modules[parent], child, module)
