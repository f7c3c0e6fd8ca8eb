#!/usr/bin/env bash
# Rebuilds the committed .wasm fixtures from their C sources with Debian's clang + wasi-libc
# (apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32).
#   scripts/build-fixtures.sh          rebuild every fixture
#   scripts/build-fixtures.sh NAME...  rebuild only these (file names without .c)
#   scripts/build-fixtures.sh --check  rebuild into a temp dir and fail if a committed one differs
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
[ "${1:-}" = "--check" ] && { check=1; shift; }
only=" $* "   # optional fixture names (without .c): build just those
CC=${CC:-clang}
CFLAGS=(--target=wasm32-wasi -O2 -Wall -Werror)
if ! command -v "$CC" >/dev/null; then echo "build-fixtures: $CC not found; install: apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32" >&2; exit 2; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# clang runs Binaryen's wasm-opt on what it links when it finds one (first beside itself, then
# on PATH), which strips the name section and changes the bytes: the fixtures are built without
# it, the same on every machine. So clang is run from its real directory, with a wasm-opt that
# leaves the file as it is first on PATH.
mkdir "$tmp/bin"
printf '#!/bin/sh\n# in -O2 -o out: leave it unoptimised\n[ "$1" = "$4" ] || cp "$1" "$4"\n' > "$tmp/bin/wasm-opt"
chmod +x "$tmp/bin/wasm-opt"
CC=$(readlink -f "$(command -v "$CC")")
export PATH="$tmp/bin:$PATH"
stale=0
for pair in "test/fixtures/src:test/fixtures/wasm" "bench/src:bench/wasm" "examples:examples"; do
  src=${pair%%:*}; out=${pair##*:}
  [ -d "$src" ] || continue
  mkdir -p "$out"
  for c in "$src"/*.c; do
    [ -e "$c" ] || continue
    name=$(basename "$c" .c)
    [ "$only" = "  " ] || [[ "$only" == *" $name "* ]] || continue
    "$CC" "${CFLAGS[@]}" "$c" -o "$tmp/$name.wasm"
    if [ $check = 1 ]; then
      if ! cmp -s "$tmp/$name.wasm" "$out/$name.wasm"; then echo "stale fixture: $out/$name.wasm (run npm run fixtures)" >&2; stale=1; fi
    else
      cp "$tmp/$name.wasm" "$out/$name.wasm"
    fi
  done
done
exit $stale
