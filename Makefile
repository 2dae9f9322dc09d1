# The marker expression of `make test-fast` (markers registered in pyproject.toml; tests/unit/project/test_markers.py
# checks that every chaos and soak module carries its marker).
FAST_TESTS := not slow and not chaos and not soak

.PHONY: serve test test-fast coverage lint lock sbom deps-latest dist bench bench-quick
serve:  ## install and serve MCP over HTTP on 127.0.0.1 (embedded NATS, a dev API key, client config printed)
	scripts/serve
test:   ## install and run lint, type checks and the whole test suite
	scripts/test
test-fast:  ## the same without the tests marked slow, chaos or soak: the loop while working (under 3 min on 2 idle cores)
	scripts/test -m "$(FAST_TESTS)"
coverage:  ## the whole suite with coverage of every process it starts: table per module, .cache/coverage/html, the floor
	scripts/coverage
lock:   ## re-resolve uv.lock from pyproject.toml, taking the newest allowed versions (then: make test, commit)
	scripts/bootstrap uv && .cache/uv/bin/uv lock --upgrade
sbom:   ## re-render src/nats_mcp/supply/sbom.cdx.json from uv.lock (after make lock; a unit test checks they agree)
	.venv/bin/python -m nats_mcp.supply.lockfile --write
deps-latest:  ## the newest allowed versions in a scratch venv: what moved, then the unit and integration suites
	scripts/deps-latest
dist:   ## the sdist and wheel in dist/, and dist/constraints.txt (the lock's versions, for installs elsewhere)
	scripts/bootstrap test && rm -rf dist && .cache/uv/bin/uv build --no-build-isolation --python .venv/bin/python \
	  --out-dir dist && .cache/uv/bin/uv export --quiet --frozen --no-emit-project --no-hashes -o dist/constraints.txt
lint:
	.venv/bin/ruff check src tests && .venv/bin/ruff format --check src tests && .venv/bin/mypy
bench:  ## every benchmark, full form (tens of minutes): one table of ratios, recorded in bench/results/DATE-full/
	scripts/bootstrap bench && .venv/bin/python bench/run_all.py --record
bench-quick:  ## every benchmark, quick form (a few minutes)
	scripts/bootstrap bench && .venv/bin/python bench/run_all.py --quick
