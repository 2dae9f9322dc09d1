.PHONY: serve test lint
serve:  ## install and serve MCP over stdio on the embedded NATS
	scripts/serve
test:   ## install and run lint, type checks and the whole test suite
	scripts/test
lint:
	.venv/bin/ruff check src tests && .venv/bin/ruff format --check src tests && .venv/bin/mypy
