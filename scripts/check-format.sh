#!/usr/bin/env bash
# Fail if any C source is not formatted by .clang-format (clang-format 14, Debian 12).
set -euo pipefail
cd "$(dirname "$0")/.."
bad=()
while IFS= read -r f; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
    bad+=("$f")
  fi
done < <(git ls-files '*.c' '*.h' 2>/dev/null || find src include tests bench examples -name '*.[ch]')
if ((${#bad[@]} > 0)); then
  echo "check-format: not formatted (run scripts/format.sh): ${bad[*]}" >&2
  exit 1
fi
