// Test driver: compiles every tool's inputSchema and outputSchema with the ajv that ships inside the MCP
// TypeScript SDK, in strict mode. Driven by tests/e2e/test_tool_schemas_ajv.py.
//
//   node ajv_schemas.mjs SDK_NODE_MODULES TOOLS_JSON_FILE
//
// SDK_NODE_MODULES: the node_modules holding @modelcontextprotocol/sdk and its ajv (`scripts/node22 --ts-sdk`).
// TOOLS_JSON_FILE: a file holding the `tools` array of a tools/list result.
//
// The SDK itself compiles output schemas with `strict: false` (ajv-provider.js); strict mode here is the stricter
// bar: unknown keywords, type-less constraints, `required` naming an undefined property, unions ajv cannot check
// and ignored defaults all throw instead of being silently accepted. Formats are added as the SDK adds them.
//
// Prints one JSON object: {"ajv": version, "compiled": n, "failures": [{"tool", "schema", "error"}]}. Every
// outcome exits 0; a non-zero exit means this script itself failed.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const [modules, toolsFile] = process.argv.slice(2);
// ajv is CommonJS; resolve it (and ajv-formats) exactly where the SDK's own import resolves them.
const require = createRequire(join(modules, "@modelcontextprotocol/sdk/package.json"));
const Ajv = require("ajv").default;
const addFormats = require("ajv-formats").default;
const tools = JSON.parse(readFileSync(toolsFile, "utf8"));

const out = { ajv: require("ajv/package.json").version, compiled: 0, failures: [] };
for (const tool of tools) {
  for (const which of ["inputSchema", "outputSchema"]) {
    const schema = tool[which];
    if (schema === undefined) continue;
    // A fresh instance per schema: one schema's failure cannot hide or cause another's.
    const ajv = new Ajv({ strict: true, allErrors: true, validateFormats: true });
    addFormats(ajv);
    try {
      ajv.compile(schema);
      out.compiled += 1;
    } catch (error) {
      out.failures.push({ tool: tool.name, schema: which, error: String(error?.message ?? error) });
    }
  }
}
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(0);
