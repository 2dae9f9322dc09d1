.PHONY: serve test lint
serve:  ## install and serve MCP over HTTP on 127.0.0.1 (embedded NATS, a dev API key, client config printed)
	scripts/serve
test:   ## install and run lint, type checks and the whole test suite
	scripts/test
lint:
	.venv/bin/ruff check src tests && .venv/bin/ruff format --check src tests && .venv/bin/mypy
