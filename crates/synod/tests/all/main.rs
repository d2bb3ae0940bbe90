//! Every integration test of `synod` in one binary: one link instead of
//! one per file (CI compiles on two cores). Each file here is a module;
//! `crates/synod/tests/all/layout.rs` fails if one is left out.

mod apply_batch;
mod blocking_facade;
mod cluster;
mod common;
mod fatal;
mod job_scheduler;
mod job_scheduler_processes;
mod layout;
mod limits;
mod local_reads;
mod membership;
mod off_loop_panics;
mod on_disk;
mod read_prefetch;
mod sessions;
mod shell_bounds;
mod slow_restore;
mod snapshot_now;
mod snapshot_off_loop;
mod state_digest;
mod streamed_snapshot;
