#!/usr/bin/env bash
# Rebuild layouts/vendor/plotly-wall.min.js.gz: plotly.js with only the trace types this app
# draws, from the plotly.js release the installed plotly package ships, with plotly.js's own
# esbuild settings, gzipped as it is sent. Run it after upgrading plotly (tests/test_plotly_bundle.py says when).
# Needs node and npm (a maintainer's tool: setup and CI use the committed file).
#   bash scripts/build-plotly-bundle.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Every trace type a figure in layouts/ uses (scatter is always in plotly.js's core).
traces=(scatter bar choroplethmap)

version=$(.venv/bin/python -c "from plotly.offline import get_plotlyjs_version as v; print(v())")
out=$PWD/layouts/vendor/plotly-wall.min.js.gz
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm install --no-audit --no-fund --silent "plotly.js@$version"
# The bundler and plugins at the versions plotly.js itself builds with.
mapfile -t tools < <(node -e '
  const dev = require("plotly.js/package.json").devDependencies;
  for (const name of ["esbuild", "esbuild-plugin-inline-css", "esbuild-plugin-environment"])
    console.log(`${name}@${dev[name]}`);
')
npm install --no-audit --no-fund --silent "${tools[@]}"

{
  echo "'use strict';"
  echo "var Plotly = require('plotly.js/lib/core');"
  echo "Plotly.register(["
  for trace in "${traces[@]}"; do
    [ "$trace" = scatter ] || echo "  require('plotly.js/lib/$trace'),"
  done
  echo "]);"
  echo "module.exports = Plotly;"
} >entry.js

TRACES="${traces[*]}" VERSION="$version" OUT=plotly-wall.min.js node -e '
const esbuild = require("esbuild");
const InlineCSSPlugin = require("esbuild-plugin-inline-css");
const { environmentPlugin } = require("esbuild-plugin-environment");
const traces = process.env.TRACES.split(" ").join(", ");
esbuild.build({
  // plotly.js esbuild-config.js, minified as its dist bundles are.
  entryPoints: ["entry.js"],
  outfile: process.env.OUT,
  format: "iife",
  globalName: "Plotly",
  bundle: true,
  minify: true,
  plugins: [InlineCSSPlugin(), environmentPlugin({ NODE_DEBUG: false })],
  alias: { regl: "@plotly/regl", stream: "stream-browserify" },
  define: { global: "window", "define.amd": "false" },
  target: "es2016",
  banner: {
    js: [
      "/**",
      `* plotly.js v${process.env.VERSION} (control-center partial bundle; traces: ${traces})`,
      "* Copyright 2012-2026, Plotly, Inc.",
      "* All rights reserved.",
      "* Licensed under the MIT license",
      "*/",
    ].join("\n"),
  },
  logLevel: "warning",
}).catch(() => process.exit(1));
'
gzip -9 -n -c plotly-wall.min.js >"$out"
cp node_modules/plotly.js/LICENSE "$(dirname "$out")/LICENSE-plotly.js.txt"
echo "wrote $out ($(wc -c <plotly-wall.min.js) bytes, $(wc -c <"$out") gzipped):" \
  "plotly.js $version, traces ${traces[*]}"
