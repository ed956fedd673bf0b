// Bundles the extension into dist/extension.js; `vscode` is provided by the editor.
import { copyFileSync } from "node:fs";
import { build } from "esbuild";

await build({
  entryPoints: ["src/extension.ts"],
  bundle: true,
  outfile: "dist/extension.js",
  external: ["vscode"],
  format: "cjs",
  platform: "node",
  target: "node20",
  sourcemap: true,
  logLevel: "warning",
});

// The config file's JSON Schema ships with the extension (jsonValidation in package.json);
// `podside schema` writes the source of truth into the Python package.
copyFileSync(new URL("../server/podside/config.schema.json", import.meta.url), new URL("dist/config.schema.json", import.meta.url));
