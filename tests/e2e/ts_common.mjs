// Shared by the TypeScript-SDK test drivers (ts_client.mjs, ts_matrix.mjs): the SDK loaded from its node_modules,
// the client transport a spec names, and what the SDK threw.
//
// SDK_NODE_MODULES: the node_modules holding @modelcontextprotocol/sdk (`scripts/node22 --ts-sdk`); ESM imports do
// not read NODE_PATH, so the SDK's files are imported by path.
import { join } from "node:path";
import { pathToFileURL } from "node:url";

export function sdkLoader(modules) {
  return (file) => import(pathToFileURL(join(modules, "@modelcontextprotocol/sdk/dist/esm", file)).href);
}

// What the SDK threw, with the fields its error classes carry (McpError: code, data; HTTP errors: code).
export function thrown(error) {
  return {
    name: error?.constructor?.name ?? typeof error,
    message: String(error?.message ?? error),
    code: error?.code ?? null,
    data: error?.data ?? null,
  };
}

// {"transport": "stdio", "command", "args", "env", "cwd"} or {"transport": "http", "url", "bearer"}; an
// authProvider goes to the HTTP transport.
export async function transport(sdk, spec, authProvider) {
  if (spec.transport === "stdio") {
    const { StdioClientTransport } = await sdk("client/stdio.js");
    return new StdioClientTransport({
      command: spec.command,
      args: spec.args ?? [],
      env: spec.env,
      cwd: spec.cwd,
      stderr: "ignore",
    });
  }
  const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");
  const headers = spec.bearer ? { Authorization: `Bearer ${spec.bearer}` } : {};
  const options = { requestInit: { headers } };
  if (authProvider) options.authProvider = authProvider;
  return new StreamableHTTPClientTransport(new URL(spec.url), options);
}
