//! Pending-handshake slots: how many accepted sockets may be in the handshake
//! at once, and from where.
//!
//! Each accepted socket holds a slot until its handshake ends (at most
//! `handshake_timeout`; a socket that sends nothing is dropped after
//! `handshake_first_byte_timeout`). The slots are split so that outsiders
//! cannot keep the members out:
//!
//! - **Member addresses.** A socket from the IP address of a member that
//!   dials us (a lower id in the current peer set: see `Net`) takes a slot
//!   from that address's own pool of `handshakes_pending_per_member_ip_max`.
//!   Those slots are not counted against the outsiders' limits below, so no
//!   number of sockets from other addresses can fill them. When the peer set
//!   changes, so do these addresses; a slot already held stays counted in the
//!   pool it was taken from until its handshake ends.
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

/// Pending handshakes now, and whose addresses are members'.
#[derive(Debug, Default)]
struct Pending {
    /// Canonical addresses of the members that dial us. Changes with the
    /// peer set; a slot keeps the pool it was taken from until dropped.
    member_ips: HashSet<IpAddr>,
    /// Outsiders' slots held, all addresses together.
    outsiders: usize,
    /// Outsiders' slots held per address. An entry stands for at least one
    /// slot and goes with the last, so there are at most `outsiders_max`.
    by_outsider: HashMap<IpAddr, usize>,
    /// Member slots held per address, each at most `per_member_ip_max`. An
    /// address that stopped being a member's keeps its entry until its slots
    /// drain (a handshake timeout at most).
    by_member_ip: HashMap<IpAddr, usize>,
}

/// The slot table of one listener.
#[derive(Debug)]
pub(crate) struct HandshakeSlots {
    limits: SlotLimits,
    pending: Mutex<Pending>,
}

/// One pending handshake; dropping it gives the slot back.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<HandshakeSlots>,
    source: IpAddr,
    /// Taken from the member pool (as opposed to the outsiders').
    member: bool,
}

impl HandshakeSlots {
    pub(crate) fn new(
        limits: SlotLimits,
        member_ips: impl IntoIterator<Item = IpAddr>,
    ) -> HandshakeSlots {
        let slots = HandshakeSlots {
            limits,
            pending: Mutex::new(Pending::default()),
        };
        slots.set_member_ips(member_ips);
        slots
    }

    /// Replaces the member addresses (the peer set changed). Slots already
    /// held stay in the pool they came from: the limits hold throughout.
    pub(crate) fn set_member_ips(&self, member_ips: impl IntoIterator<Item = IpAddr>) {
        let member_ips = member_ips.into_iter().map(|ip| ip.to_canonical()).collect();
        self.pending().member_ips = member_ips;
    }

    /// Takes a slot for a socket from `source`, or says which limit is full.
    pub(crate) fn take(self: &Arc<Self>, source: IpAddr) -> Result<Slot, HandshakeError> {
        let source = source.to_canonical();
        let mut pending = self.pending();
        let member = pending.member_ips.contains(&source);
        let (held, source_max) = if member {
            (&pending.by_member_ip, self.limits.per_member_ip_max)
        } else {
            (&pending.by_outsider, self.limits.per_source_max)
        };
        if held.get(&source).copied().unwrap_or(0) >= source_max {
            return Err(HandshakeError::SourceBusy {
                source_ip: source,
                max: source_max,
            });
        }
        if member {
            *pending.by_member_ip.entry(source).or_insert(0) += 1;
        } else {
            if pending.outsiders >= self.limits.outsiders_max {
                return Err(HandshakeError::TooBusy(self.limits.outsiders_max));
            }
            pending.outsiders += 1;
            *pending.by_outsider.entry(source).or_insert(0) += 1;
        }
        debug_assert!(pending.outsiders <= self.limits.outsiders_max);
        debug_assert!(pending.by_outsider.len() <= pending.outsiders);
        debug_assert!(pending
            .by_member_ip
            .values()
            .all(|held| *held <= self.limits.per_member_ip_max));
        Ok(Slot {
            slots: self.clone(),
            source,
            member,
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Every update completes before the guard drops, and none panics
        // midway, so a poisoned table is still a consistent one.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let pending = self.pending();
        let members: usize = pending.by_member_ip.values().sum();
        (pending.outsiders, pending.outsiders + members)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut pending = self.slots.pending();
        let held = if self.member {
            &mut pending.by_member_ip
        } else {
            debug_assert!(pending.outsiders > 0);
            pending.outsiders = pending.outsiders.saturating_sub(1);
            &mut pending.by_outsider
        };
        if let Some(count) = held.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.source);
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

    #[test]
    fn a_changed_member_set_applies_to_new_slots_only() {
        let slots = table();
        let member = slots.take(ip("10.0.0.1")).unwrap();
        // 10.0.0.1 leaves, 10.0.0.2 joins.
        slots.set_member_ips([ip("10.0.0.2")]);
        // The old member address is an outsider now: two slots, counted as such.
        let former: Vec<Slot> = (0..2)
            .map(|_| slots.take(ip("10.0.0.1")).unwrap())
            .collect();
        assert!(matches!(
            slots.take(ip("10.0.0.1")),
            Err(HandshakeError::SourceBusy { max: 2, .. })
        ));
        assert_eq!(slots.held(), (2, 3));
        // The new member has its own three, outside the outsiders' limits.
        let joined: Vec<Slot> = (0..3)
            .map(|_| slots.take(ip("10.0.0.2")).unwrap())
            .collect();
        assert_eq!(slots.held(), (2, 6));
        // The slot taken as a member goes back to the member pool.
        drop(member);
        assert_eq!(slots.held(), (2, 5));
        drop((former, joined));
        assert_eq!(slots.held(), (0, 0));
    }
}
