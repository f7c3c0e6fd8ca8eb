#!/usr/bin/env bash
# Rebuilds the committed .wasm fixtures from their C sources with Debian's clang + wasi-libc
# (apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32).
#   scripts/build-fixtures.sh          rebuild every fixture
#   scripts/build-fixtures.sh NAME...  rebuild only these (file names without .c)
#   scripts/build-fixtures.sh --check  rebuild into a temp dir and fail if a committed one differs
#   --sqlite (with any of the above)   also the fixtures linked with SQLite (test/fixtures/src/
#                                      sqlite_*.c); without it they are left as committed
# The SQLite fixtures are linked with SQLite's amalgamation, which is not in the repository:
# scripts/sqlite-amalgamation.sh fetches it from the npm registry (once; then cached), and
# compiling it takes a minute. So they are built only when asked (--sqlite): --check alone
# stays fast and needs no network, and the committed sqlite_*.wasm change only with SQLite's
# pinned version or their own source.
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
sqlite=0
while [ $# -gt 0 ]; do
  case $1 in
    --check) check=1; shift ;;
    --sqlite) sqlite=1; shift ;;
    *) break ;;
  esac
done
only=" $* "   # optional fixture names (without .c): build just those
CC=${CC:-clang}
CFLAGS=(--target=wasm32-wasi -O2 -Wall -Werror)
# SQLite on WASI: no WAL (no shared memory there), no threads, mmap emulated by wasi-libc.
SQLITE_FLAGS=(-D_WASI_EMULATED_MMAN -DSQLITE_OMIT_WAL -DSQLITE_THREADSAFE=0)
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
    case $name in
      sqlite_*)
        [ $sqlite = 1 ] || continue
        if [ ! -e "$tmp/sqlite3.o" ]; then
          amalgamation=$(bash scripts/sqlite-amalgamation.sh)
          "$CC" --target=wasm32-wasi -O2 "${SQLITE_FLAGS[@]}" -c "$amalgamation/sqlite3.c" -o "$tmp/sqlite3.o"
        fi
        "$CC" "${CFLAGS[@]}" "${SQLITE_FLAGS[@]}" -I"$amalgamation" "$c" "$tmp/sqlite3.o" -lwasi-emulated-mman -o "$tmp/$name.wasm" ;;
      *) "$CC" "${CFLAGS[@]}" "$c" -o "$tmp/$name.wasm" ;;
    esac
    if [ $check = 1 ]; then
      if ! cmp -s "$tmp/$name.wasm" "$out/$name.wasm"; then echo "stale fixture: $out/$name.wasm (run npm run fixtures$([[ $name == sqlite_* ]] && echo ' -- --sqlite'))" >&2; stale=1; fi
    else
      cp "$tmp/$name.wasm" "$out/$name.wasm"
    fi
  done
done
exit $stale
