//! Pending-handshake slots: how many accepted sockets may be in the handshake
//! at once, and from where.
//!
//! Each accepted socket holds a slot until its handshake ends (at most
//! `handshake_timeout`; a socket that sends nothing is dropped after
//! `handshake_first_byte_timeout`). The slots are split so that outsiders
//! cannot keep the members out:
//!
//! - **Member addresses.** A socket from the IP address of a member that
//!   dials us (a lower id: see `Net`) takes a slot from that address's own
//!   pool of `handshakes_pending_per_member_ip_max`. Those slots are not
//!   counted against the outsiders' limits below, so no number of sockets
//!   from other addresses can fill them.
//! - **Everyone else.** At most `handshakes_pending_max` in all, and at most
//!   `handshakes_pending_per_source_max` from one address.
//!
//! What this does not cover: a host that shares a member's address (on
//! loopback, every local process; in production, the member's own host) gets
//! that member's pool. It can hold those slots for a handshake timeout at a
//! time, as it could before; it is on the member's host already.
//!
//! Addresses are compared in canonical form (an IPv4-mapped IPv6 address is
//! its IPv4 address), so a dual-stack listener sees the same address as the
//! peer's config.

use crate::handshake::HandshakeError;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// The limits, from `NetConfig`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotLimits {
    /// Outsiders' pending handshakes in all.
    pub outsiders_max: usize,
    /// Outsiders' pending handshakes from one address.
    pub per_source_max: usize,
    /// Pending handshakes from one member address (counted apart).
    pub per_member_ip_max: usize,
}

/// Pending handshakes now.
#[derive(Debug, Default)]
struct Pending {
    /// Outsiders' slots held, all addresses together.
    outsiders: usize,
    /// Slots held per address, members' and outsiders'. An entry stands for
    /// at least one slot and goes with the last, so there are at most
    /// `outsiders_max` outsider entries plus one per member address.
    by_source: HashMap<IpAddr, usize>,
}

/// The slot table of one listener.
#[derive(Debug)]
pub(crate) struct HandshakeSlots {
    limits: SlotLimits,
    /// Canonical addresses of the members that dial us.
    member_ips: HashSet<IpAddr>,
    pending: Mutex<Pending>,
}

/// One pending handshake; dropping it gives the slot back.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<HandshakeSlots>,
    source: IpAddr,
    member: bool,
}

impl HandshakeSlots {
    pub(crate) fn new(
        limits: SlotLimits,
        member_ips: impl IntoIterator<Item = IpAddr>,
    ) -> HandshakeSlots {
        HandshakeSlots {
            limits,
            member_ips: member_ips.into_iter().map(|ip| ip.to_canonical()).collect(),
            pending: Mutex::new(Pending::default()),
        }
    }

    /// Takes a slot for a socket from `source`, or says which limit is full.
    pub(crate) fn take(self: &Arc<Self>, source: IpAddr) -> Result<Slot, HandshakeError> {
        let source = source.to_canonical();
        let member = self.member_ips.contains(&source);
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let held = pending.by_source.get(&source).copied().unwrap_or(0);
        let source_max = if member {
            self.limits.per_member_ip_max
        } else {
            self.limits.per_source_max
        };
        if held >= source_max {
            return Err(HandshakeError::SourceBusy {
                source_ip: source,
                max: source_max,
            });
        }
        if !member {
            if pending.outsiders >= self.limits.outsiders_max {
                return Err(HandshakeError::TooBusy(self.limits.outsiders_max));
            }
            pending.outsiders += 1;
        }
        *pending.by_source.entry(source).or_insert(0) += 1;
        debug_assert!(pending.outsiders <= self.limits.outsiders_max);
        debug_assert!(pending.by_source.len() <= self.limits.outsiders_max + self.member_ips.len());
        Ok(Slot {
            slots: self.clone(),
            source,
            member,
        })
    }

    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        (pending.outsiders, pending.by_source.values().sum())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut pending = self
            .slots
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !self.member {
            debug_assert!(pending.outsiders > 0);
            pending.outsiders = pending.outsiders.saturating_sub(1);
        }
        if let Some(count) = pending.by_source.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                pending.by_source.remove(&self.source);
            }
        } else {
            debug_assert!(false, "slot of {} was not counted", self.source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn table() -> Arc<HandshakeSlots> {
        let limits = SlotLimits {
            outsiders_max: 4,
            per_source_max: 2,
            per_member_ip_max: 3,
        };
        Arc::new(HandshakeSlots::new(limits, [ip("10.0.0.1")]))
    }

    #[test]
    fn outsiders_cannot_take_the_member_slots() {
        let slots = table();
        // Two outsider addresses fill the outsiders' table...
        let outsiders: Vec<Slot> = ["10.9.0.1", "10.9.0.1", "10.9.0.2", "10.9.0.2"]
            .iter()
            .map(|a| slots.take(ip(a)).unwrap())
            .collect();
        assert!(matches!(
            slots.take(ip("10.9.0.3")),
            Err(HandshakeError::TooBusy(4))
        ));
        assert!(matches!(
            slots.take(ip("10.9.0.1")),
            Err(HandshakeError::SourceBusy { max: 2, .. })
        ));
        // ...and the member's address still has its own three.
        let member: Vec<Slot> = (0..3)
            .map(|_| slots.take(ip("10.0.0.1")).unwrap())
            .collect();
        assert!(matches!(
            slots.take(ip("10.0.0.1")),
            Err(HandshakeError::SourceBusy { max: 3, .. })
        ));
        assert_eq!(slots.held(), (4, 7));
        drop(member);
        drop(outsiders);
        assert_eq!(slots.held(), (0, 0));
    }

    #[test]
    fn member_slots_do_not_count_against_outsiders() {
        let slots = table();
        let member: Vec<Slot> = (0..3)
            .map(|_| slots.take(ip("10.0.0.1")).unwrap())
            .collect();
        let outsiders: Vec<Slot> = ["10.9.0.1", "10.9.0.1", "10.9.0.2", "10.9.0.2"]
            .iter()
            .map(|a| slots.take(ip(a)).unwrap())
            .collect();
        assert_eq!(slots.held(), (4, 7));
        drop((member, outsiders));
        assert_eq!(slots.held(), (0, 0));
    }

    #[test]
    fn a_mapped_ipv6_address_is_the_member() {
        let slots = table();
        let held: Vec<Slot> = ["::ffff:10.0.0.1", "10.0.0.1", "::ffff:10.0.0.1"]
            .iter()
            .map(|a| slots.take(ip(a)).unwrap())
            .collect();
        assert!(slots.take(ip("10.0.0.1")).is_err());
        assert_eq!(slots.held(), (0, 3));
        drop(held);
    }
}
