.PHONY: serve test lint bench bench-quick
serve:  ## install and serve MCP over HTTP on 127.0.0.1 (embedded NATS, a dev API key, client config printed)
	scripts/serve
test:   ## install and run lint, type checks and the whole test suite
	scripts/test
lint:
	.venv/bin/ruff check src tests && .venv/bin/ruff format --check src tests && .venv/bin/mypy
bench:  ## every benchmark, full form (tens of minutes): one table of ratios, recorded in bench/results/DATE-full/
	scripts/bootstrap bench && .venv/bin/python bench/run_all.py --record
bench-quick:  ## every benchmark, quick form (a few minutes)
	scripts/bootstrap bench && .venv/bin/python bench/run_all.py --quick
