//! Every integration test of `synod-storage` in one binary: one link instead of
//! one per file (CI compiles on two cores). Each file here is a module;
//! `crates/synod/tests/all/layout.rs` fails if one is left out.

mod common;

mod checkpoint_job;
mod conformance;
mod crash;
mod damaged;
mod kill9;
mod regressions;
mod salt;
mod sim_crash;
mod sim_fs;
