// Test driver: the official MCP TypeScript SDK's Client against `nats-mcp serve`, as Claude Code, Cursor, VS Code
// and the Inspector use it. Driven by tests/e2e/test_ts_client.py.
//
//   node ts_client.mjs SDK_NODE_MODULES SPEC_JSON
//
// SDK_NODE_MODULES: the node_modules holding @modelcontextprotocol/sdk (`scripts/node22 --ts-sdk`).
// SPEC_JSON: {"transport": "stdio", "command": ..., "args": [...], "env": {...}, "cwd": ...}
//         or {"transport": "http", "url": ..., "bearer": ... (optional), "oauth": true (optional)}
//         plus "calls": [{"name": ..., "arguments": {...}}, ...]; a call may instead name another Client method
//         and its one argument: {"op": "readResource", "params": {"uri": ...}} (listTools, readResource, ...).
//         A tool call with "progress": true asks for progress; what arrived is its "progress" list.
// "oauth" gives the transport an OAuth client provider holding no token, as OAuth-capable clients (Claude Code)
// have: on a 401 the SDK then runs OAuth discovery instead of reporting the response.
//
// Prints one JSON object: {"connected": true, "serverInfo": ..., "calls": [{"result": ...} | {"error": ...}]} or
// {"connected": false, "error": ...}. Every outcome exits 0; a non-zero exit means this script itself failed.
import { sdkLoader, thrown, transport } from "./ts_common.mjs";

const [modules, specJson] = process.argv.slice(2);
const spec = JSON.parse(specJson);
const sdk = sdkLoader(modules);
const { Client } = await sdk("client/index.js");

// "oauth": an interactive client's provider before any login: no tokens, no registration, a loopback redirect.
function oauthProvider() {
  let client;
  return {
    get redirectUrl() {
      return "http://127.0.0.1:1/callback";
    },
    get clientMetadata() {
      return { client_name: "nats-mcp ts_client", redirect_uris: ["http://127.0.0.1:1/callback"] };
    },
    clientInformation: () => client,
    saveClientInformation: (info) => {
      client = info;
    },
    tokens: () => undefined,
    saveTokens: () => {},
    redirectToAuthorization: () => {},
    saveCodeVerifier: () => {},
    codeVerifier: () => "",
  };
}

const client = new Client({ name: "nats-mcp-ts-client", version: "0" });
const out = { connected: false, calls: [] };
try {
  await client.connect(await transport(sdk, spec, spec.oauth ? oauthProvider() : undefined));
  out.connected = true;
  out.serverInfo = client.getServerVersion() ?? null;
  // Clients list tools first; the SDK compiles each tool's outputSchema then and checks every result against it.
  await client.listTools();
  for (const call of spec.calls ?? []) {
    try {
      const progress = [];
      const options = call.progress ? { onprogress: (p) => progress.push(p) } : undefined;
      const result = call.op
        ? await client[call.op](call.params ?? {})
        : await client.callTool({ name: call.name, arguments: call.arguments ?? {} }, undefined, options);
      out.calls.push(call.progress ? { result, progress } : { result });
    } catch (error) {
      out.calls.push({ error: thrown(error) });
    }
  }
} catch (error) {
  out.error = thrown(error);
} finally {
  await client.close().catch(() => {});
}
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(0);
