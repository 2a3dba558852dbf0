#!/usr/bin/env bash
# Doxygen INPUT_FILTER for include/weft/*.h: scripts/doxygen-filter.sh FILE, the filtered
# text on stdout. The headers keep plain /* */ comments (STYLE.md); this turns them into
# Doxygen comments on the fly, so the comments already there are the documentation:
#
#   - the file's first comment           /* weft/x.h: ... */  ->  /** weft/x.h: ... \file */
#   - a comment that opens a line         /* summary ... */    ->  /** summary ... */
#     (it documents the declaration after it)
#   - a comment after code on its line    int n; /* what */    ->  int n; /**< what */
#     (it documents that member, enumerator, macro or function)
#   - inside a comment, a line indented three or more spaces past its " *" (the headers'
#     usage sketches and diagrams) gets two more, so Markdown shows it as code
#
# Comments already in Doxygen form (/** or /*!) are left alone. Only comment openers
# outside comments are rewritten, and no line is added or removed, so Doxygen's warnings
# point at the header's real lines. The headers hold no string literal containing "/*".
set -euo pipefail

awk '
function rewrite(line,    out, pos, before, rest, closing) {
  out = ""
  if (in_comment && line ~ /^ \*   /)
    line = " *  " substr(line, 3)
  while (line != "") {
    if (in_comment) {
      pos = index(line, "*/")
      if (pos == 0) { out = out line; line = ""; break }
      closing = substr(line, 1, pos - 1)
      if (first_pending) { closing = closing " \\file "; first_pending = 0 }
      out = out closing "*/"
      line = substr(line, pos + 2)
      in_comment = 0
      continue
    }
    pos = index(line, "/*")
    if (pos == 0 || index(line, "//") && index(line, "//") < pos) { out = out line; break }
    before = substr(line, 1, pos - 1)
    rest = substr(line, pos + 2)
    if (rest ~ /^[*!]/) {
      out = out before "/*"                 # already a Doxygen comment
    } else if (!seen_first && before ~ /^[ \t]*$/) {
      out = out before "/**"                # the file comment
      first_pending = 1
    } else if (before ~ /^[ \t]*$/) {
      out = out before "/**"                # documents what follows
    } else {
      out = out before "/**<"               # documents what precedes, on this line
    }
    seen_first = 1
    in_comment = 1
    line = rest
  }
  return out
}
{ print rewrite($0) }
' "$1"
