//! SIGINT/SIGTERM as a flag, for the commands that manage child processes
//! (`cluster`, `chaos`): they poll it and stop their children cleanly; and a
//! message for SIGBUS, for the server.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to the flag.
pub fn install() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Whether SIGINT or SIGTERM arrived.
pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// What SIGBUS means in a server: snapshots are read through a memory map
/// (`synod_storage::fs`), and a mapped file cut short under the process, or
/// a disk that fails to read a mapped page, raises it where no error can be
/// returned. The process still ends (a fatal error), but says why.
const SIGBUS_MESSAGE: &[u8] =
    b"synod: fatal: SIGBUS: a memory-mapped file (a snapshot in the data \
directory) was cut short or could not be read from the disk; the node stops. Check the disk and \
the data directory, then restart (a damaged snapshot is refused with a message at the start)\n";

extern "C" fn on_sigbus(_: libc::c_int) {
    // SAFETY: write(2), signal(2) and raise(3) are async-signal-safe, and the
    // message is static. With the default action back, the raised signal
    // (blocked while this handler runs) ends the process as SIGBUS always
    // did once the handler returns; so does the faulting access, run again.
    // The raise matters for a SIGBUS sent by `kill`, which no access
    // repeats: returning alone would leave the node running after saying
    // it stops (review, stop 62).
    unsafe {
        libc::write(2, SIGBUS_MESSAGE.as_ptr().cast(), SIGBUS_MESSAGE.len());
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
        libc::raise(libc::SIGBUS);
    }
}

/// Writes a message to stderr before a SIGBUS ends the process.
pub fn explain_sigbus() {
    // SAFETY: the handler makes only async-signal-safe calls.
    unsafe {
        libc::signal(libc::SIGBUS, on_sigbus as *const () as libc::sighandler_t);
    }
}
