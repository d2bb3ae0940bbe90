//! The handshake: the first frame each way on a new connection.
//!
//! Layout of the payload (little-endian, after the usual 4-byte length prefix):
//!
//! | bytes | field                                                  |
//! |-------|--------------------------------------------------------|
//! | 4     | magic `b"SYND"`                                        |
//! | 2     | protocol version ([`PROTOCOL_VERSION`])                |
//! | 8     | cluster id                                             |
//! | 4     | sender node id                                         |
//! | 4     | node id the sender expects at the other end            |
//!
//! With TLS (the `tls` module) this handshake runs inside the TLS session,
//! and the acceptor answers only once the dialer's certificate names the id
//! its handshake claims. The dialer (lower id) speaks first; the acceptor
//! checks it and answers with its own. Magic and version come first so that a later version may grow the
//! payload and still be refused with a clear message by this one.

use crate::config::NetConfig;
use std::net::IpAddr;
use std::time::Duration;
use synod_core::NodeId;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The magic bytes that open every handshake.
pub const MAGIC: [u8; 4] = *b"SYND";
/// The protocol version this crate speaks. Version 2: heartbeats carry a read probe; read-index request and reply.
/// Version 3: promises come in pages (`first_instance`, `more_from`). Version 4: snapshot chunks
/// carry the digest of the whole snapshot; replicas exchange state digests. Version 5: a
/// heartbeat acknowledgement carries the lease it grants. Version 6: a read-index reply carries
/// the leader's chosen prefix. Version 7: a read-index request carries the
/// follower's vouch (its promise, when it may stand as an acknowledgement). Version 8: a
/// heartbeat acknowledgement says whether the follower is restoring a snapshot. Version 9:
/// ... or rebuilding lost state (`Restoring::Rebuilding`).
pub const PROTOCOL_VERSION: u16 = 9;
/// Length of a handshake payload (unchanged since version 1).
pub const HANDSHAKE_PAYLOAD_BYTES: usize = 4 + 2 + 8 + 4 + 4;
/// Largest first frame read before the peer is known; bounds what an
/// unauthenticated socket can make us allocate.
const HANDSHAKE_FRAME_BYTES_MAX: usize = 256;
/// How many values [`HandshakeError::reason`] takes.
pub(crate) const REJECT_REASONS: usize = 18;
/// Magic plus version: the least a first frame must hold to be judged.
const HANDSHAKE_PREFIX_BYTES: usize = 6;

/// One side's handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Handshake {
    pub cluster_id: u64,
    /// The sender.
    pub from: NodeId,
    /// Whom the sender expects to be talking to.
    pub to: NodeId,
}

/// Why a handshake failed; the text completes "peer ADDR ...: closing".
#[derive(Debug, Error)]
pub(crate) enum HandshakeError {
    #[error("failed during the handshake: {0}")]
    Io(#[from] std::io::Error),
    #[error("did not finish the handshake within {0:?}")]
    Timeout(Duration),
    #[error("sent nothing within {0:?} of connecting")]
    Silent(Duration),
    #[error("sent a first frame of {0} bytes, which is not a handshake")]
    NotHandshake(usize),
    #[error("sent magic {0:?}, not \"SYND\" (not a Synod peer?)")]
    BadMagic([u8; 4]),
    #[error("speaks protocol version {theirs}, we speak {ours}")]
    Version { theirs: u16, ours: u16 },
    #[error("sent a handshake of {0} bytes, expected {HANDSHAKE_PAYLOAD_BYTES}")]
    Length(usize),
    #[error("sent cluster id {theirs}, we are {ours}")]
    ClusterId { theirs: u64, ours: u64 },
    #[error("claims to be {0}, which is not a member")]
    UnknownPeer(NodeId),
    #[error("claims to be {theirs}, but only lower ids than ours ({ours}) dial us")]
    NotLower { theirs: NodeId, ours: NodeId },
    #[error("expected to reach {expected}, but we are {ours}")]
    WrongTarget { expected: NodeId, ours: NodeId },
    #[error("answered as {theirs}, but we dialed {dialed}")]
    WrongPeer { theirs: NodeId, dialed: NodeId },
    #[error("arrived while {0} handshakes were already pending")]
    TooBusy(usize),
    #[error("arrived while {max} handshakes from {source_ip} were already pending")]
    SourceBusy { source_ip: IpAddr, max: usize },
    #[error("failed the TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("claims to be {claimed}, but {why}")]
    NotCertified { claimed: NodeId, why: String },
    #[error("connected as {peer} again within {interval:?} of its last accepted connection (rate limited; the current link stays)")]
    RateLimited { peer: NodeId, interval: Duration },
    #[error("claims to be {0}, which is not a member here, while {1} links from such nodes were already open")]
    Strangers(NodeId, usize),
}

/// What this node knows of the id a dialer claims (see [`Handshake::check_hello`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Standing {
    /// In the current peer set.
    Member,
    /// Was in the peer set and left it: refused, as the core refuses it.
    Departed,
    /// Never in the peer set here: a member of a membership this node has
    /// not learned yet, or no member at all.
    Stranger,
}

impl HandshakeError {
    /// A TLS failure or a certificate that does not match the claimed id:
    /// the other end could not prove it is a member.
    pub(crate) fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            HandshakeError::Tls(_) | HandshakeError::NotCertified { .. }
        )
    }

    /// Which kind of refusal this is, in `0..REJECT_REASONS`: the unit by
    /// which refusal lines are rate limited (see the `ratelog` module).
    pub(crate) fn reason(&self) -> usize {
        match self {
            HandshakeError::Io(_) => 0,
            HandshakeError::Timeout(_) => 1,
            HandshakeError::NotHandshake(_) => 2,
            HandshakeError::BadMagic(_) => 3,
            HandshakeError::Version { .. } => 4,
            HandshakeError::Length(_) => 5,
            HandshakeError::ClusterId { .. } => 6,
            HandshakeError::UnknownPeer(_) => 7,
            HandshakeError::NotLower { .. } => 8,
            HandshakeError::WrongTarget { .. } => 9,
            HandshakeError::WrongPeer { .. } => 10,
            HandshakeError::TooBusy(_) => 11,
            HandshakeError::SourceBusy { .. } => 12,
            HandshakeError::Tls(_) => 13,
            HandshakeError::NotCertified { .. } => 14,
            HandshakeError::RateLimited { .. } => 15,
            HandshakeError::Silent(_) => 16,
            HandshakeError::Strangers(..) => 17,
        }
    }

    /// Refused by a limit, before or after the handshake.
    pub(crate) fn is_rate_limited(&self) -> bool {
        matches!(
            self,
            HandshakeError::TooBusy(_)
                | HandshakeError::SourceBusy { .. }
                | HandshakeError::RateLimited { .. }
                | HandshakeError::Strangers(..)
        )
    }
}

impl Handshake {
    /// The whole frame: length prefix and payload.
    pub(crate) fn to_frame(self) -> [u8; 4 + HANDSHAKE_PAYLOAD_BYTES] {
        let mut frame = [0u8; 4 + HANDSHAKE_PAYLOAD_BYTES];
        frame[0..4].copy_from_slice(&(HANDSHAKE_PAYLOAD_BYTES as u32).to_le_bytes());
        frame[4..8].copy_from_slice(&MAGIC);
        frame[8..10].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        frame[10..18].copy_from_slice(&self.cluster_id.to_le_bytes());
        frame[18..22].copy_from_slice(&self.from.0.to_le_bytes());
        frame[22..26].copy_from_slice(&self.to.0.to_le_bytes());
        frame
    }

    /// Parses a payload (without the length prefix).
    pub(crate) fn parse(payload: &[u8]) -> Result<Handshake, HandshakeError> {
        if payload.len() < HANDSHAKE_PREFIX_BYTES {
            return Err(HandshakeError::NotHandshake(payload.len()));
        }
        let magic = [payload[0], payload[1], payload[2], payload[3]];
        if magic != MAGIC {
            return Err(HandshakeError::BadMagic(magic));
        }
        let version = u16::from_le_bytes([payload[4], payload[5]]);
        if version != PROTOCOL_VERSION {
            return Err(HandshakeError::Version {
                theirs: version,
                ours: PROTOCOL_VERSION,
            });
        }
        if payload.len() != HANDSHAKE_PAYLOAD_BYTES {
            return Err(HandshakeError::Length(payload.len()));
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([
                payload[at],
                payload[at + 1],
                payload[at + 2],
                payload[at + 3],
            ])
        };
        let mut cluster = [0u8; 8];
        cluster.copy_from_slice(&payload[6..14]);
        Ok(Handshake {
            cluster_id: u64::from_le_bytes(cluster),
            from: NodeId(u32_at(14)),
            to: NodeId(u32_at(18)),
        })
    }

    /// The acceptor's check of the dialer's handshake. `standing` says what
    /// this node knows of an id now (the peer set changes at run time, so it
    /// is asked, not read from `cfg`).
    ///
    /// A departed member is refused. A stranger (an id never in our peer
    /// set) passes here whatever its id: it may be a member of a membership
    /// we have not learned, which knows us while we do not know it, and it
    /// is how we learn that membership (see `net.rs`, "Strangers"). Whether
    /// it may really claim that id is the caller's `authorize` step (with
    /// TLS, its certificate must name it).
    pub(crate) fn check_hello(
        &self,
        cfg: &NetConfig,
        standing: impl FnOnce(NodeId) -> Standing,
    ) -> Result<(), HandshakeError> {
        self.check_cluster(cfg)?;
        let standing = if self.from == cfg.node_id {
            // Claims to be us: refused below as not lower.
            Standing::Member
        } else {
            standing(self.from)
        };
        match standing {
            Standing::Departed => return Err(HandshakeError::UnknownPeer(self.from)),
            // One connection per pair: the lower id dials. A higher member
            // dialing us would make a second connection for the pair (or is
            // misconfigured).
            Standing::Member if self.from >= cfg.node_id => {
                return Err(HandshakeError::NotLower {
                    theirs: self.from,
                    ours: cfg.node_id,
                });
            }
            Standing::Member | Standing::Stranger => {}
        }
        if self.to != cfg.node_id {
            return Err(HandshakeError::WrongTarget {
                expected: self.to,
                ours: cfg.node_id,
            });
        }
        Ok(())
    }

    /// The dialer's check of the acceptor's answer.
    pub(crate) fn check_reply(
        &self,
        cfg: &NetConfig,
        dialed: NodeId,
    ) -> Result<(), HandshakeError> {
        self.check_cluster(cfg)?;
        if self.from != dialed {
            return Err(HandshakeError::WrongPeer {
                theirs: self.from,
                dialed,
            });
        }
        if self.to != cfg.node_id {
            return Err(HandshakeError::WrongTarget {
                expected: self.to,
                ours: cfg.node_id,
            });
        }
        Ok(())
    }

    fn check_cluster(&self, cfg: &NetConfig) -> Result<(), HandshakeError> {
        if self.cluster_id != cfg.cluster_id {
            return Err(HandshakeError::ClusterId {
                theirs: self.cluster_id,
                ours: cfg.cluster_id,
            });
        }
        Ok(())
    }
}

/// Reads one handshake frame. Reads exactly the frame, so nothing that follows
/// it is consumed.
async fn read_handshake<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Handshake, HandshakeError> {
    let mut prefix = [0u8; 4];
    reader.read_exact(&mut prefix).await?;
    let len = u32::from_le_bytes(prefix) as usize;
    // Checked before reading, so garbage claiming a huge length costs nothing.
    if !(HANDSHAKE_PREFIX_BYTES..=HANDSHAKE_FRAME_BYTES_MAX).contains(&len) {
        return Err(HandshakeError::NotHandshake(len));
    }
    let mut payload = [0u8; HANDSHAKE_FRAME_BYTES_MAX];
    reader.read_exact(&mut payload[..len]).await?;
    Handshake::parse(&payload[..len])
}

/// Acceptor side: reads and checks the dialer's handshake (`standing`: see
/// [`Handshake::check_hello`]), asks `authorize` whether the dialer may be
/// the id it claims (with TLS: does its certificate name that id), answers
/// with ours, and returns what `authorize` returned.
pub(crate) async fn accept<S, T>(
    stream: &mut S,
    cfg: &NetConfig,
    standing: impl FnOnce(NodeId) -> Standing,
    authorize: impl FnOnce(NodeId) -> Result<T, HandshakeError>,
) -> Result<T, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hello = read_handshake(stream).await?;
    hello.check_hello(cfg, standing)?;
    let authorized = authorize(hello.from)?;
    let reply = Handshake {
        cluster_id: cfg.cluster_id,
        from: cfg.node_id,
        to: hello.from,
    };
    stream.write_all(&reply.to_frame()).await?;
    stream.flush().await?;
    Ok(authorized)
}

/// Dialer side: sends our handshake to `peer` and checks its answer.
pub(crate) async fn dial<S>(
    stream: &mut S,
    cfg: &NetConfig,
    peer: NodeId,
) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hello = Handshake {
        cluster_id: cfg.cluster_id,
        from: cfg.node_id,
        to: peer,
    };
    stream.write_all(&hello.to_frame()).await?;
    stream.flush().await?;
    let reply = read_handshake(stream).await?;
    reply.check_reply(cfg, peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::net::SocketAddr;

    fn config(node: u32) -> NetConfig {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let peers: BTreeMap<_, _> = (1..=3).map(|id| (NodeId(id), addr)).collect();
        NetConfig::new(
            7,
            NodeId(node),
            addr,
            peers,
            crate::tls::PeerSecurity::InsecureLoopback,
        )
    }

    /// Membership of the test clusters: nodes 1 to 3; node 4 left.
    fn member(id: NodeId) -> Standing {
        match id.0 {
            1..=3 => Standing::Member,
            4 => Standing::Departed,
            _ => Standing::Stranger,
        }
    }

    fn hello(cluster_id: u64, from: u32, to: u32) -> Handshake {
        Handshake {
            cluster_id,
            from: NodeId(from),
            to: NodeId(to),
        }
    }

    #[test]
    fn frame_layout_is_pinned() {
        let frame = hello(0x0102030405060708, 1, 2).to_frame();
        assert_eq!(
            frame,
            [
                22, 0, 0, 0, b'S', b'Y', b'N', b'D', 9, 0, 8, 7, 6, 5, 4, 3, 2, 1, 1, 0, 0, 0, 2,
                0, 0, 0
            ]
        );
        assert_eq!(
            Handshake::parse(&frame[4..]).unwrap(),
            hello(0x0102030405060708, 1, 2)
        );
    }

    #[test]
    fn parse_rejects_bad_prefixes() {
        assert!(matches!(
            Handshake::parse(b"SYN"),
            Err(HandshakeError::NotHandshake(3))
        ));
        assert!(
            matches!(Handshake::parse(b"GET / HTTP"), Err(HandshakeError::BadMagic(m)) if &m == b"GET ")
        );
        let mut v1 = hello(7, 1, 2).to_frame()[4..].to_vec();
        v1[4] = 1;
        v1.push(0);
        assert!(matches!(
            Handshake::parse(&v1),
            Err(HandshakeError::Version { theirs: 1, ours: 9 })
        ));
        let short = &hello(7, 1, 2).to_frame()[4..20];
        assert!(matches!(
            Handshake::parse(short),
            Err(HandshakeError::Length(16))
        ));
    }

    #[test]
    fn acceptor_checks_cluster_membership_direction_and_target() {
        let cfg = config(2);
        hello(7, 1, 2).check_hello(&cfg, member).unwrap();
        assert!(matches!(
            hello(8, 1, 2).check_hello(&cfg, member),
            Err(HandshakeError::ClusterId { theirs: 8, ours: 7 })
        ));
        // A departed member is refused; the standing is asked, not read
        // from the config: the set changes at run time.
        assert!(matches!(
            hello(7, 4, 2).check_hello(&cfg, member),
            Err(HandshakeError::UnknownPeer(NodeId(4)))
        ));
        assert!(matches!(
            hello(7, 1, 2).check_hello(&cfg, |_| Standing::Departed),
            Err(HandshakeError::UnknownPeer(NodeId(1)))
        ));
        // A stranger passes whatever its id (authorization comes next).
        hello(7, 0, 2).check_hello(&cfg, member).unwrap();
        hello(7, 9, 2).check_hello(&cfg, member).unwrap();
        assert!(matches!(
            hello(7, 9, 3).check_hello(&cfg, member),
            Err(HandshakeError::WrongTarget { .. })
        ));
        // Claiming to be us is refused whatever the standing says.
        assert!(matches!(
            hello(7, 2, 2).check_hello(&cfg, |_| Standing::Stranger),
            Err(HandshakeError::NotLower { .. })
        ));
        assert!(matches!(
            hello(7, 3, 2).check_hello(&cfg, member),
            Err(HandshakeError::NotLower { .. })
        ));
        assert!(matches!(
            hello(7, 2, 2).check_hello(&cfg, member),
            Err(HandshakeError::NotLower { .. })
        ));
        assert!(matches!(
            hello(7, 1, 3).check_hello(&cfg, member),
            Err(HandshakeError::WrongTarget { .. })
        ));
    }

    #[test]
    fn dialer_checks_the_reply() {
        let cfg = config(1);
        hello(7, 2, 1).check_reply(&cfg, NodeId(2)).unwrap();
        assert!(matches!(
            hello(7, 3, 1).check_reply(&cfg, NodeId(2)),
            Err(HandshakeError::WrongPeer { .. })
        ));
        assert!(matches!(
            hello(6, 2, 1).check_reply(&cfg, NodeId(2)),
            Err(HandshakeError::ClusterId { .. })
        ));
        assert!(matches!(
            hello(7, 2, 3).check_reply(&cfg, NodeId(2)),
            Err(HandshakeError::WrongTarget { .. })
        ));
    }

    #[test]
    fn error_text_reads_as_a_log_line() {
        let err = HandshakeError::ClusterId { theirs: 5, ours: 9 };
        assert_eq!(err.to_string(), "sent cluster id 5, we are 9");
    }

    #[tokio::test]
    async fn dial_and_accept_agree_over_a_pipe() {
        let (mut a, mut b) = tokio::io::duplex(256);
        let (dialer, acceptor) = (config(1), config(2));
        let (dialed, accepted) = tokio::join!(
            dial(&mut a, &dialer, NodeId(2)),
            accept(&mut b, &acceptor, member, Ok)
        );
        dialed.unwrap();
        assert_eq!(accepted.unwrap(), NodeId(1));
    }

    #[tokio::test]
    async fn a_huge_first_length_is_refused_without_reading_it() {
        let (mut a, mut b) = tokio::io::duplex(256);
        a.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        let err = accept(&mut b, &config(2), member, Ok).await.unwrap_err();
        assert!(matches!(err, HandshakeError::NotHandshake(n) if n == u32::MAX as usize));
    }
}
