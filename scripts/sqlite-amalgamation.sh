#!/usr/bin/env bash
# Prints the directory holding SQLite's amalgamation (sqlite3.c, sqlite3.h), which the
# sqlite_job fixture is linked with (scripts/build-fixtures.sh --sqlite). The amalgamation is
# not in the repository: it ships in the npm package better-sqlite3 (deps/sqlite3), fetched
# here with `npm pack` (the npm registry, nothing else), checked against the hashes pinned
# below, and kept in ${XDG_CACHE_HOME:-~/.cache}/stasis-build/sqlite-VERSION for next time.
# SQLITE_AMALGAMATION=DIR uses DIR as it is (checked against the same hashes).
set -euo pipefail
PACKAGE=better-sqlite3@12.11.1   # SQLite 3.53.2
SQLITE_VERSION=3.53.2
SHA256_C=60d2f39a3726cd6b9021da6f4e868608d66fbb6528a9f513dc8ffcc640493422
SHA256_H=9e69a1353a4288450b0d5239ede11fc7f1f4c8e5eb07491fc8317eacb5b7de7e

verify() {
  echo "$SHA256_C  $1/sqlite3.c
$SHA256_H  $1/sqlite3.h" | sha256sum --check --status 2>/dev/null
}

if [ -n "${SQLITE_AMALGAMATION:-}" ]; then
  verify "$SQLITE_AMALGAMATION" || { echo "sqlite-amalgamation: $SQLITE_AMALGAMATION does not hold SQLite $SQLITE_VERSION's sqlite3.c and sqlite3.h (from $PACKAGE)" >&2; exit 2; }
  echo "$SQLITE_AMALGAMATION"; exit 0
fi
dir="${XDG_CACHE_HOME:-$HOME/.cache}/stasis-build/sqlite-$SQLITE_VERSION"
if [ -f "$dir/sqlite3.c" ] && verify "$dir"; then echo "$dir"; exit 0; fi

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$tmp"/better-sqlite3-*.tgz -C "$tmp" package/deps/sqlite3/sqlite3.c package/deps/sqlite3/sqlite3.h
verify "$tmp/package/deps/sqlite3" || { echo "sqlite-amalgamation: $PACKAGE's deps/sqlite3 does not match the pinned hashes" >&2; exit 2; }
mkdir -p "$(dirname "$dir")"
rm -rf "$dir.tmp" && mv "$tmp/package/deps/sqlite3" "$dir.tmp" && rm -rf "$dir" && mv "$dir.tmp" "$dir"
echo "$dir"
