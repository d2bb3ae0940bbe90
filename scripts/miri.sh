#!/usr/bin/env bash
# Runs the tests of the keyspace's unsafe code under Miri (undefined
# behaviour, aliasing, provenance, leaks): thin_bytes.rs, the trie's nodes
# (trie/node.rs) and the entries and keyspace built on them. Needs a nightly toolchain with the miri component
# (`rustup +nightly component add miri`); not part of `cargo test`, which
# runs the same tests natively. About 15 minutes on 2 cores (the trie's
# model tests are most of it).
set -euo pipefail
cd "$(dirname "$0")/.."
MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation -Zmiri-strict-provenance}" \
  cargo +nightly miri test -p synod-kv --lib --offline -- entry:: thin_bytes:: keyspace::tests trie:: "$@"
