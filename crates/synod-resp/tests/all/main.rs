//! Every integration test of `synod-resp` in one binary: one link instead of
//! one per file (CI compiles on two cores). Each file here is a module;
//! `crates/synod/tests/all/layout.rs` fails if one is left out.

mod chunking;
mod hostile_input;
mod request_parser;
mod round_trip;
mod unauthenticated;
