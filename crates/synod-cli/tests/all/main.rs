//! Every integration test of `synod-cli` in one binary: one link instead of
//! one per file (CI compiles on two cores). Each file here is a module;
//! `crates/synod/tests/all/layout.rs` fails if one is left out.

mod common;

mod acl;
mod admin;
mod bench;
mod bench_plot;
mod chaos;
mod client_tls_failover;
mod fatal;
mod lease;
mod limits;
mod maxmemory;
mod membership;
mod peer_attacks;
mod server;
mod shutdown;
mod sync_placement;
mod wipe;
