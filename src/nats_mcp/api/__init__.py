"""The MCP surface: the server, tools, resources, prompts and completions built on the domain."""
