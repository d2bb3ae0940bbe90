//! Free loopback ports for tests that start servers on ports they name
//! (a peer list, a restart on the same address), shared by the test
//! binaries of several crates through `#[path]`: no crate of the workspace
//! is for tests alone.

use std::net::{SocketAddr, TcpListener};

/// `n` loopback addresses free a moment ago, each handed out once per test
/// process.
///
/// The ports come from below the kernel's ephemeral range (a process-wide
/// counter starting at a place the process id picks), never from `bind(0)`:
/// a port the kernel handed out for `bind(0)` and that was then released
/// can be taken before the server binds it, by another test's `bind(0)` or
/// by any client socket's `connect` (which draws its local port from the
/// same range). A node whose peer or admin port was taken that way exited
/// at start, and its test failed with "node N never listened" (CI, stop 31).
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let mut addrs = Vec::with_capacity(n);
    while addrs.len() < n {
        // Still checked: a server of another process may hold it.
        if let Ok(l) = TcpListener::bind(("127.0.0.1", take_ports(1))) {
            addrs.push(l.local_addr().expect("addr"));
        }
    }
    addrs
}

/// A base port `b` such that `b..b + len` were all free a moment ago and
/// are handed out to no other caller of this process, for commands that
/// derive their ports from a base (`synod cluster --base-port`).
pub fn free_port_block(len: u16) -> u16 {
    loop {
        let base = take_ports(len);
        if (0..len).all(|o| TcpListener::bind(("127.0.0.1", base + o)).is_ok()) {
            return base;
        }
    }
}

/// Takes `len` consecutive ports from the process-wide counter, wrapping
/// within [LOW, the ephemeral range's first port). (On a machine whose
/// ephemeral range starts below 11000 the range is widened to 11000, and
/// its top ports may be a client's: not expected on the machines we test
/// on. Two test processes may still draw the same port; the bind check
/// catches one that holds it.)
fn take_ports(len: u16) -> u16 {
    use std::sync::Mutex;
    const LOW: u32 = 10_000;
    // (next port, end of the range, ports taken so far)
    static NEXT: Mutex<Option<(u32, u32, u32)>> = Mutex::new(None);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let (at, high, taken) = next.get_or_insert_with(|| {
        let high = ephemeral_low().clamp(LOW + 1_000, 65_000);
        (
            LOW + std::process::id().wrapping_mul(7_919) % (high - LOW),
            high,
            0,
        )
    });
    let len = u32::from(len);
    if *at + len > *high {
        // The ports skipped at the top count as taken, so that no port
        // comes round a second time before the assertion below fires.
        *taken += *high - *at;
        *at = LOW;
    }
    *taken += len;
    assert!(
        *taken <= *high - LOW,
        "no free loopback ports left below {high}"
    );
    let base = *at;
    *at += len;
    u16::try_from(base).expect("port below 65536")
}

/// The first port of the kernel's ephemeral range (32768 when unknown).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|w| w.parse().ok()))
        .unwrap_or(32_768)
}
