//! Every integration test of `synod-sim` in one binary: one link instead of
//! one per file (CI compiles on two cores). Each file here is a module;
//! `crates/synod/tests/all/layout.rs` fails if one is left out.

/// jemalloc, as in the shipping `synod` binary: a seed's run allocates and
/// frees at every message, batch and snapshot, and glibc's malloc and free
/// were a tenth of the simulator's time. Nothing the simulator decides
/// depends on the allocator (Lua's memory limit counts the bytes it asks
/// for, not what an allocator rounds them to): the same seeds give the same
/// histories. Declared by the binary and the tests, not the library, so a
/// crate that links the library keeps its own allocator.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod negative_controls;
mod seeds;
