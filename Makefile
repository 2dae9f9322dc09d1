.PHONY: serve test lint lock deps-latest bench bench-quick
serve:  ## install and serve MCP over HTTP on 127.0.0.1 (embedded NATS, a dev API key, client config printed)
	scripts/serve
test:   ## install and run lint, type checks and the whole test suite
	scripts/test
lock:   ## re-resolve uv.lock from pyproject.toml, taking the newest allowed versions (then: make test, commit)
	scripts/bootstrap uv && .cache/uv/bin/uv lock --upgrade
deps-latest:  ## the newest allowed versions in a scratch venv: what moved, then the unit and integration suites
	scripts/deps-latest
lint:
	.venv/bin/ruff check src tests && .venv/bin/ruff format --check src tests && .venv/bin/mypy
bench:  ## every benchmark, full form (tens of minutes): one table of ratios, recorded in bench/results/DATE-full/
	scripts/bootstrap bench && .venv/bin/python bench/run_all.py --record
bench-quick:  ## every benchmark, quick form (a few minutes)
	scripts/bootstrap bench && .venv/bin/python bench/run_all.py --quick
