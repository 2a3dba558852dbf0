#!/usr/bin/env bash
# Build the API reference: HTML from include/weft/*.h with Doxygen (docs/Doxyfile, the
# header comments turned into Doxygen ones by scripts/doxygen-filter.sh).
#
#   scripts/docs.sh [outdir]      default build/docs; the pages go to <outdir>/html
#
# Then checks what came out, and exits non-zero when Doxygen failed, warned about a file
# it could not find or read, or when the HTML lacks a page for a header or the weft_go
# entry. Doxygen's warnings are printed (and kept in <outdir>/doxygen-*.log).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
out=${1:-build/docs}
mkdir -p "$out"
out=$(cd "$out" && pwd)
command -v doxygen >/dev/null || { echo "docs: doxygen missing (scripts/install-deps.sh)" >&2; exit 1; }

rm -rf "$out/html"
# Warnings about the configuration (a missing INPUT) go to stderr before the log file is
# opened: keep both.
: >"$out/doxygen-warnings.log"
if ! WEFT_SRC=$src WEFT_DOCS_OUT=$out doxygen docs/Doxyfile 2>"$out/doxygen-stderr.log"; then
  cat "$out/doxygen-stderr.log" >&2
  echo "docs: doxygen failed" >&2
  exit 1
fi
cat "$out/doxygen-stderr.log" "$out/doxygen-warnings.log" >&2
if cat "$out/doxygen-stderr.log" "$out/doxygen-warnings.log" |
  grep -Eiq 'does not exist|not found|not a readable|cannot open|could not open|no such file'; then
  echo "docs: doxygen could not find or open a file (above)" >&2
  exit 1
fi

# A page per header, named as Doxygen names them (debug_server.h: debug__server_8h.html),
# whose description is the header's first comment ("weft/x.h: what it is", by the filter).
missing=0
for h in include/weft/*.h; do
  base=$(basename "$h" .h)
  page=$out/html/${base//_/__}_8h.html
  if [[ ! -f $page ]] || ! grep -q "weft/$base.h:" "$page"; then
    echo "docs: no page for $h (want $page)" >&2
    missing=1
  fi
done
if ! grep -q '>weft_go</a>(fn' "$out/html/runtime_8h.html" 2>/dev/null; then
  echo "docs: no weft_go entry in runtime_8h.html" >&2
  missing=1
fi
if ((missing)); then
  exit 1
fi
echo "docs: $(ls include/weft/*.h | wc -l) headers -> $out/html/index.html"
