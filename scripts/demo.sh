#!/usr/bin/env bash
# Install what weft needs, build it (release) and run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
dir=$(bash scripts/build.sh release)
echo "=== weft demo: $dir/examples/fanout 10000" >&2
"$dir/examples/fanout" 10000
