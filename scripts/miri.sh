#!/usr/bin/env bash
# Runs the tests of the keyspace's unsafe code under Miri (undefined
# behaviour, aliasing, provenance, leaks): thin_bytes.rs and the entries and
# keyspace built on it. Needs a nightly toolchain with the miri component
# (`rustup +nightly component add miri`); not part of `cargo test`, which
# runs the same tests natively. About 4 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation -Zmiri-strict-provenance}" \
  cargo +nightly miri test -p synod-kv --lib --offline -- entry:: thin_bytes:: keyspace::tests "$@"
