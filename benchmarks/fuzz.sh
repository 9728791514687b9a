#!/usr/bin/env bash
# Runs every Go fuzz target in the module for $FUZZTIME each (a duration
# such as 2m, or a count such as 2000x; default 2000x).
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-2000x}
for pkg in $(go list ./...); do
	for target in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
		echo "fuzz $pkg $target ($FUZZTIME)"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" >/tmp/iotpipe-fuzz.log 2>&1 || { cat /tmp/iotpipe-fuzz.log; exit 1; }
	done
done
echo "fuzz: all targets passed"
