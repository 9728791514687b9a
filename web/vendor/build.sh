#!/usr/bin/env bash
# Rebuilds web/static/vendor from the pinned npm packages of
# web/vendor/package-lock.json. The result is committed, so `go build`
# needs no npm; run this only to change a vendored version:
#   (edit package.json) && web/vendor/build.sh && git add web/vendor web/static/vendor
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --ignore-scripts
out=../static/vendor/uplot
rm -rf "$out" && mkdir -p "$out"
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css node_modules/uplot/LICENSE "$out/"
echo "uplot $(node -p 'require("./node_modules/uplot/package.json").version')" > "$out/VERSION"
echo "vendored into web/static/vendor: $(cat "$out/VERSION")"
