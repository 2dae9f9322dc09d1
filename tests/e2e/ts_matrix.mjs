// Test driver: one whole scenario through the official MCP TypeScript SDK's Client, in one Node process (a Node
// start per call would cost ~0.5 s each). Driven by tests/e2e/test_ts_matrix.py.
//
//   node ts_matrix.mjs SDK_NODE_MODULES SPEC_JSON
//
// SPEC_JSON: the transport as for ts_client.mjs ({"transport": "stdio", "command", "args", "env", "cwd"} or
// {"transport": "http", "url", "bearer"}) plus "steps", run in order:
//   {"tool": NAME, "arguments": {...}, "save": {"VAR": "dotted.path.in.the.result"}}   client.callTool
//   {"op": METHOD, "params": {...}, "save": {...}}      another Client method (listResources, subscribeResource, ...)
//   {"await": URI, "timeoutMs": N}                     a notifications/resources/updated for URI since the last
//                                                      subscribeResource of it (N bounds a failure, it is no delay)
// A string argument "$VAR" anywhere in arguments/params is replaced by what an earlier step saved.
//
// Prints one JSON object: {"connected": true, "serverInfo", "capabilities", "protocolVersion",
// "steps": [{"result": ...} | {"error": ...}]} or {"connected": false, "error": ...}. Exits 0 on every outcome.
import { sdkLoader, thrown, transport } from "./ts_common.mjs";

const [modules, specJson] = process.argv.slice(2);
const spec = JSON.parse(specJson);
const sdk = sdkLoader(modules);
const { Client } = await sdk("client/index.js");
const { ResourceUpdatedNotificationSchema } = await sdk("types.js");

const saved = {};
function substitute(value) {
  if (typeof value === "string" && value.startsWith("$") && value.slice(1) in saved) return saved[value.slice(1)];
  if (Array.isArray(value)) return value.map(substitute);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v)]));
  }
  return value;
}
const pick = (value, path) => path.split(".").reduce((v, key) => (v == null ? undefined : v[key]), value);

// Updates per URI since its last subscribe, and who waits for the next one.
const updates = new Map();
const waiters = new Map();
function updated(uri) {
  updates.set(uri, (updates.get(uri) ?? 0) + 1);
  for (const wake of waiters.get(uri) ?? []) wake();
  waiters.delete(uri);
}
function nextUpdate(uri, timeoutMs) {
  if ((updates.get(uri) ?? 0) > 0) return Promise.resolve({ updates: updates.get(uri) });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no resources/updated for ${uri} in ${timeoutMs} ms`)), timeoutMs);
    waiters.set(uri, [
      ...(waiters.get(uri) ?? []),
      () => {
        clearTimeout(timer);
        resolve({ updates: updates.get(uri) });
      },
    ]);
  });
}

const client = new Client({ name: "nats-mcp-ts-matrix", version: "0" });
client.setNotificationHandler(ResourceUpdatedNotificationSchema, (note) => updated(note.params.uri));
const out = { connected: false, steps: [] };
try {
  const link = await transport(sdk, spec);
  await client.connect(link);
  out.connected = true;
  out.serverInfo = client.getServerVersion() ?? null;
  out.capabilities = client.getServerCapabilities() ?? null;
  out.protocolVersion = link.protocolVersion ?? null;
  // Clients list tools first; the SDK compiles each tool's outputSchema then and checks every result against it.
  await client.listTools();
  for (const step of spec.steps ?? []) {
    try {
      let result;
      if (step.await) {
        result = await nextUpdate(step.await, step.timeoutMs ?? 20000);
      } else if (step.op) {
        const params = substitute(step.params ?? {});
        if (step.op === "subscribeResource") updates.set(params.uri, 0);
        result = await client[step.op](params);
      } else {
        result = await client.callTool({ name: step.tool, arguments: substitute(step.arguments ?? {}) });
      }
      for (const [name, path] of Object.entries(step.save ?? {})) saved[name] = pick(result, path);
      out.steps.push({ result });
    } catch (error) {
      out.steps.push({ error: thrown(error) });
    }
  }
} catch (error) {
  out.error = thrown(error);
} finally {
  await client.close().catch(() => {});
}
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(0);
