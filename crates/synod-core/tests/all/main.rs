//! Every integration test of `synod-core` in one binary: one link instead of
//! one per file (CI compiles on two cores). Each file here is a module;
//! `crates/synod/tests/all/layout.rs` fails if one is left out.

mod common;

mod ballots;
mod bounds;
mod codec;
mod cohort;
mod compacted_voter;
mod lease;
mod membership;
mod reads;
mod rebuild;
mod rebuild_hold;
mod review_membership;
mod scenarios;
