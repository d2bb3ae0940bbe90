//! Every integration test of `synod-kv` in one binary: one link instead of
//! one per file (CI compiles on two cores). Each file here is a module;
//! `crates/synod/tests/all/layout.rs` fails if one is left out.

mod common;
mod resp_cluster;

mod acl;
mod acl_grants;
mod acl_in_flight;
mod acl_review_attacks;
mod barrier_review;
mod barrier_review2;
mod bits_keys;
mod client_limits;
mod client_tls;
mod codec;
mod collections;
mod dump;
mod exec;
mod exec_review;
mod expiry;
mod hash_bounds;
mod hostile_commands;
mod info_auth;
mod keys;
mod keyspace_events;
mod limits;
mod lists_hashes;
mod maxmemory_flag;
mod memory;
mod random_draws;
mod refusal_review;
mod refusal_review2;
mod refusal_review3;
mod scan;
mod script_acl_review;
mod script_dry_run;
mod sets;
mod shared_barrier_review;
mod snapshot;
mod strings;
mod table;
mod time_reads;
mod transactions_bounded;
mod ttl_clock;
mod watch;
mod watch_resp;
mod zsets;
