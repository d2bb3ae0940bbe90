//! Every integration test of `synod-net` in one binary: one link instead of
//! one per file (CI compiles on two cores). Each file here is a module;
//! `crates/synod/tests/all/layout.rs` fails if one is left out.

mod common;

mod drops;
mod keepalive;
mod malformed;
mod membership;
mod mesh;
mod reconnect;
mod slots;
mod strangers;
mod tls;
