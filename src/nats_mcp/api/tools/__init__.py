"""The tool rows: one module per tool family, and the base every tool result and error goes through."""
