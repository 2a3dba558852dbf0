#!/usr/bin/env bash
# Install what weft needs, build it (release) and run the tour (scripts/tour.sh: paymentd
# under a load spike, the enrichment pipeline with a flaky API, the crawler over a local
# site; a summary on stdout and an HTML report whose path is printed last). Arguments go
# to tour.sh (--out DIR, --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
dir=$(bash scripts/build.sh release)
echo "=== weft tour (about 30 s): scripts/tour.sh --build-dir $dir $*" >&2
exec bash scripts/tour.sh --build-dir "$dir" "$@"
