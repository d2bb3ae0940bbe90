//! Mixed commands: the parts of synod-kv the linearizability clients leave
//! alone (hashes, sets, sorted sets, lists beyond `RPUSH`/`BLPOP`, strings
//! beyond `SET`/`APPEND`, counters, bits, expiry, `RENAME`/`COPY`,
//! `SORT .. STORE`, random draws, Lua scripts, transactions of them),
//! proposed by leaders in the form the server logs them, on keys of their
//! own (`m:*`).
//!
//! No model says what they should answer. What is checked is that every
//! replica, whatever crashes, restarts, snapshots and catch-up it went
//! through, reaches the same state and gave the same replies: each reply
//! goes into a running hash kept with the state (`Kv::mixed_replies`, in
//! its snapshots), and the digest comparison covers that hash and the
//! store (every type's snapshot encoding and restore). Commands whose
//! answer depends on a random draw (`SPOP`, `SRANDMEMBER`, `HRANDFIELD`,
//! `ZRANDMEMBER`, `math.random`) are seeded from the log
//! (`ApplyContext::index`); the `local-random-draws` negative control seeds
//! them by node instead, and must be caught.
//!
//! Some run as ACL users (`KvCommand::AsUser`, as the server sends every
//! log command): with the stamp of the user's rules as the proposing
//! leader holds them (as a front end checks a request), now and then a
//! stamp no rules have, among `ACL SETUSER`/`DELUSER`s of those users
//! (on/off, key patterns, command categories). Every replica must admit or
//! refuse each alike, whatever it restored or replayed: the refusal is in
//! the replies' hash, and the users are in the state.
//!
//! Proposed from a stream of their own (see `World::new`), in about half
//! the seeds, one every few tens of ms of a leader's ticks, at most
//! [`IN_FLIGHT_MAX`] waiting per node; none once the run settles.

use crate::world::{Token, World};
use bytes::{BufMut, Bytes, BytesMut};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use synod::engine::Kind;
use synod_core::RoleKind;
use synod_kv::scripting::{EvalCommand, APPLY_LIMITS};
use synod_kv::KvCommand;

mod wide;

/// What a mixed command's payload starts with (then a `u64` that makes
/// every payload distinct, then synod-kv's encoding of the command).
pub const MIXED: &[u8] = b"synod-sim: mixed\0";

/// The client index of a mixed command's answer: no client's.
pub(crate) const MIXED_CLIENT: usize = usize::MAX - 1;

/// Mixed commands a node may have waiting for their answer.
const IN_FLIGHT_MAX: u32 = 4;

/// The payload proposed for `command`.
pub fn payload(nonce: u64, command: &KvCommand) -> Bytes {
    let encoded = command.encode();
    let mut buf = BytesMut::with_capacity(MIXED.len() + 8 + encoded.len());
    buf.put_slice(MIXED);
    buf.put_u64_le(nonce);
    buf.put_slice(&encoded);
    buf.freeze()
}

/// The command bytes (synod-kv's encoding) of a mixed payload; `None` for
/// another payload.
pub fn command_bytes(payload: &[u8]) -> Option<&[u8]> {
    payload.strip_prefix(MIXED)?.get(8..)
}

/// The keys, by the type the generator mostly gives them (any command may
/// name any of them, so some meet the wrong type).
const HASHES: &[&str] = &["m:h0", "m:h1"];
const SETS: &[&str] = &["m:s0", "m:s1", "m:s2"];
const ZSETS: &[&str] = &["m:z0", "m:z1", "m:z2"];
const LISTS: &[&str] = &["m:l0", "m:l1"];
const STRINGS: &[&str] = &["m:c0", "m:c1", "m:b0"];
/// Short members and fields, so sets and hashes stay small and overlap.
const MEMBERS: &[&str] = &["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];

/// Lua scripts a mixed `EVAL` runs (each on `KEYS[1]`, `KEYS[2]`): draws,
/// reads feeding writes, an error, a table built by iteration.
const SCRIPTS: &[&str] = &[
    "local n = math.random(1000000) redis.call('SADD', KEYS[1], tostring(n % 50)) return n",
    "return redis.call('SRANDMEMBER', KEYS[1], -3)",
    "local t = redis.call('HGETALL', KEYS[1]) for i = 1, #t, 2 do redis.call('ZADD', KEYS[2], #t[i + 1], t[i]) end return #t",
    "local m = redis.call('SPOP', KEYS[1]) if m then redis.call('RPUSH', KEYS[2], m) end return m",
    "return redis.call('INCR', KEYS[1])",
    "local r = {} for i = 1, 3 do r[i] = math.random(10) end redis.call('HSET', KEYS[1], 'r', table.concat(r, ',')) return r",
    "return redis.pcall('LPUSH', KEYS[1], ARGV[1])",
    "return {redis.call('ZRANDMEMBER', KEYS[1], 2, 'WITHSCORES'), redis.call('TYPE', KEYS[2])}",
];

fn pick<'a>(rng: &mut ChaCha8Rng, from: &[&'a str]) -> &'a str {
    from.choose(rng).copied().unwrap_or("m:x")
}

/// Any mixed key, small or wide: now and then a command meets a key of
/// another type.
fn any_key(rng: &mut ChaCha8Rng) -> &'static str {
    let small: [&[&'static str]; 5] = [HASHES, SETS, ZSETS, LISTS, STRINGS];
    let kind = if rng.gen_bool(0.3) {
        wide::ALL.choose(rng)
    } else {
        small.choose(rng)
    };
    pick(rng, kind.copied().unwrap_or(HASHES))
}

/// A key of the intended type most of the time.
fn key(rng: &mut ChaCha8Rng, of: &[&'static str]) -> &'static str {
    if rng.gen_bool(0.05) {
        any_key(rng)
    } else {
        pick(rng, of)
    }
}

/// One to `most` members.
fn members(rng: &mut ChaCha8Rng, most: usize) -> Vec<String> {
    let n = rng.gen_range(1..=most);
    (0..n).map(|_| pick(rng, MEMBERS).to_string()).collect()
}

/// `ZADD key`, then one of NX, XX, GT and LT in 4 draws of `spread`, and CH
/// 3 times in 10.
fn zadd_with_flags(rng: &mut ChaCha8Rng, key: &str, spread: u32) -> Vec<String> {
    let mut args = vec!["ZADD".to_string(), key.to_string()];
    if let Some(flag) = ["NX", "XX", "GT", "LT"].get(rng.gen_range(0..spread) as usize) {
        args.push(flag.to_string());
    }
    if rng.gen_bool(0.3) {
        args.push("CH".to_string());
    }
    args
}

/// One random command's arguments, as a client would send them: a small
/// one, or (2 in 5) a wide one (see `wide`).
pub(crate) fn random_args(rng: &mut ChaCha8Rng) -> Vec<Bytes> {
    if rng.gen_bool(0.4) {
        return wide::args(rng);
    }
    let s = |v: &str| v.to_string();
    let n = |rng: &mut ChaCha8Rng, lo: i64, hi: i64| rng.gen_range(lo..=hi).to_string();
    let mut args: Vec<String> = match rng.gen_range(0..62) {
        // Hashes.
        0..=2 => {
            let mut a = vec![s("HSET"), s(key(rng, HASHES))];
            for field in members(rng, 3) {
                a.push(field);
                a.push(n(rng, 0, 999));
            }
            a
        }
        3 => vec![s("HDEL"), s(key(rng, HASHES)), s(pick(rng, MEMBERS))],
        4 => vec![
            s("HINCRBY"),
            s(key(rng, HASHES)),
            s(pick(rng, MEMBERS)),
            n(rng, -5, 5),
        ],
        5 => vec![
            s("HINCRBYFLOAT"),
            s(key(rng, HASHES)),
            s(pick(rng, MEMBERS)),
            s("0.25"),
        ],
        6 => vec![
            s("HRANDFIELD"),
            s(key(rng, HASHES)),
            n(rng, -4, 4),
            s("WITHVALUES"),
        ],
        7 => vec![
            s("HSETNX"),
            s(key(rng, HASHES)),
            s(pick(rng, MEMBERS)),
            s("x"),
        ],
        // Sets.
        8..=10 => {
            let mut a = vec![s("SADD"), s(key(rng, SETS))];
            a.extend(members(rng, 4));
            a
        }
        11 => vec![s("SREM"), s(key(rng, SETS)), s(pick(rng, MEMBERS))],
        12 => vec![s("SPOP"), s(key(rng, SETS)), n(rng, 1, 3)],
        13 => vec![s("SPOP"), s(key(rng, SETS))],
        14 => vec![s("SRANDMEMBER"), s(key(rng, SETS)), n(rng, -5, 5)],
        15 => vec![
            s("SMOVE"),
            s(key(rng, SETS)),
            s(key(rng, SETS)),
            s(pick(rng, MEMBERS)),
        ],
        16 => vec![
            s(pick(rng, &["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"])),
            s(key(rng, SETS)),
            s(key(rng, SETS)),
            s(key(rng, SETS)),
        ],
        17 => vec![s("SMEMBERS"), s(key(rng, SETS))],
        // Sorted sets.
        18..=20 => {
            let key = key(rng, ZSETS);
            let mut a = zadd_with_flags(rng, key, 6);
            for member in members(rng, 3) {
                a.push(n(rng, -20, 20));
                a.push(member);
            }
            a
        }
        21 => vec![
            s("ZADD"),
            s(key(rng, ZSETS)),
            s("INCR"),
            s("1.5"),
            s(pick(rng, MEMBERS)),
        ],
        22 => vec![
            s("ZINCRBY"),
            s(key(rng, ZSETS)),
            n(rng, -3, 3),
            s(pick(rng, MEMBERS)),
        ],
        23 => vec![s("ZREM"), s(key(rng, ZSETS)), s(pick(rng, MEMBERS))],
        24 => vec![
            s(pick(rng, &["ZPOPMIN", "ZPOPMAX"])),
            s(key(rng, ZSETS)),
            n(rng, 1, 3),
        ],
        25 => vec![
            s("ZRANDMEMBER"),
            s(key(rng, ZSETS)),
            n(rng, -4, 4),
            s("WITHSCORES"),
        ],
        26 => vec![
            s("ZRANGESTORE"),
            s(key(rng, ZSETS)),
            s(key(rng, ZSETS)),
            n(rng, 0, 2),
            n(rng, -2, 5),
        ],
        27 => vec![
            s(pick(rng, &["ZUNIONSTORE", "ZINTERSTORE"])),
            s(key(rng, ZSETS)),
            s("2"),
            s(key(rng, ZSETS)),
            s(key(rng, SETS)),
            s("WEIGHTS"),
            s("2"),
            s("0.5"),
            s("AGGREGATE"),
            s(pick(rng, &["SUM", "MIN", "MAX"])),
        ],
        28 => vec![
            s("ZDIFFSTORE"),
            s(key(rng, ZSETS)),
            s("2"),
            s(key(rng, ZSETS)),
            s(key(rng, ZSETS)),
        ],
        29 => vec![
            s("ZREMRANGEBYSCORE"),
            s(key(rng, ZSETS)),
            s("(-5"),
            n(rng, -5, 5),
        ],
        30 => vec![
            s("ZREMRANGEBYRANK"),
            s(key(rng, ZSETS)),
            s("0"),
            n(rng, 0, 1),
        ],
        31 => vec![s("ZREMRANGEBYLEX"), s(key(rng, ZSETS)), s("[a"), s("(c")],
        32 => vec![
            s("ZMPOP"),
            s("2"),
            s(key(rng, ZSETS)),
            s(key(rng, ZSETS)),
            s(pick(rng, &["MIN", "MAX"])),
            s("COUNT"),
            n(rng, 1, 3),
        ],
        33 => vec![
            s("ZRANGE"),
            s(key(rng, ZSETS)),
            s("0"),
            s("-1"),
            s("WITHSCORES"),
        ],
        // Lists.
        34 | 35 => {
            let mut a = vec![s(pick(rng, &["LPUSH", "RPUSH"])), s(key(rng, LISTS))];
            a.extend(members(rng, 3));
            a
        }
        36 => vec![
            s(pick(rng, &["LPOP", "RPOP"])),
            s(key(rng, LISTS)),
            n(rng, 1, 2),
        ],
        37 => vec![
            s("LINSERT"),
            s(key(rng, LISTS)),
            s(pick(rng, &["BEFORE", "AFTER"])),
            s(pick(rng, MEMBERS)),
            s("z"),
        ],
        38 => vec![s("LSET"), s(key(rng, LISTS)), n(rng, -2, 2), s("y")],
        39 => vec![s("LTRIM"), s(key(rng, LISTS)), s("0"), n(rng, 3, 12)],
        40 => vec![
            s("LMOVE"),
            s(key(rng, LISTS)),
            s(key(rng, LISTS)),
            s(pick(rng, &["LEFT", "RIGHT"])),
            s(pick(rng, &["LEFT", "RIGHT"])),
        ],
        41 => vec![s("LREM"), s(key(rng, LISTS)), n(rng, -1, 1), s("z")],
        42 => vec![
            s("LMPOP"),
            s("2"),
            s(key(rng, LISTS)),
            s(key(rng, LISTS)),
            s(pick(rng, &["LEFT", "RIGHT"])),
            s("COUNT"),
            s("2"),
        ],
        // Strings, counters, bits.
        43 => vec![
            s(pick(rng, &["INCRBY", "DECRBY"])),
            s(key(rng, STRINGS)),
            n(rng, 1, 9),
        ],
        44 => vec![s("INCRBYFLOAT"), s(key(rng, STRINGS)), s("1.25")],
        45 => vec![s("APPEND"), s(key(rng, STRINGS)), s(pick(rng, MEMBERS))],
        46 => vec![s("SETRANGE"), s(key(rng, STRINGS)), n(rng, 0, 8), s("xy")],
        47 => vec![
            s("SETBIT"),
            s(key(rng, STRINGS)),
            n(rng, 0, 63),
            n(rng, 0, 1),
        ],
        48 => vec![
            s("BITOP"),
            s(pick(rng, &["AND", "OR", "XOR"])),
            s(key(rng, STRINGS)),
            s(key(rng, STRINGS)),
            s(key(rng, STRINGS)),
        ],
        49 => vec![
            s("SET"),
            s(key(rng, STRINGS)),
            n(rng, 0, 99),
            s(pick(rng, &["KEEPTTL", "NX", "XX", "GET"])),
        ],
        50 => vec![s("GETDEL"), s(key(rng, STRINGS))],
        // Keys and expiry: TTLs short enough to run out, so sweeps and
        // lazy expiry meet every type.
        51 => vec![s("PEXPIRE"), s(any_key(rng)), n(rng, 50, 3000)],
        52 => vec![s("EXPIRE"), s(any_key(rng)), n(rng, 1, 4), s("NX")],
        53 => vec![s("PERSIST"), s(any_key(rng))],
        54 => vec![s("DEL"), s(any_key(rng))],
        55 => {
            let from = any_key(rng);
            vec![s("RENAME"), s(from), s(any_key(rng))]
        }
        56 => vec![s("COPY"), s(any_key(rng)), s(any_key(rng)), s("REPLACE")],
        57 => {
            let source = if rng.gen_bool(0.5) {
                key(rng, LISTS)
            } else {
                key(rng, SETS)
            };
            vec![
                s("SORT"),
                s(source),
                s("ALPHA"),
                s(pick(rng, &["ASC", "DESC"])),
                s("LIMIT"),
                s("0"),
                n(rng, 1, 6),
                s("STORE"),
                s(key(rng, LISTS)),
            ]
        }
        58 => vec![s("GETEX"), s(any_key(rng)), s("PX"), n(rng, 100, 2000)],
        59 => vec![
            s("MSET"),
            s(key(rng, STRINGS)),
            n(rng, 0, 9),
            s(key(rng, STRINGS)),
            n(rng, 0, 9),
        ],
        60 => vec![
            s("SINTERCARD"),
            s("2"),
            s(key(rng, SETS)),
            s(key(rng, SETS)),
        ],
        _ => vec![s("TYPE"), s(any_key(rng))],
    };
    args.retain(|arg| !arg.is_empty());
    args.into_iter().map(Bytes::from).collect()
}

/// `args` as the server parses them.
fn parse(args: &[Bytes]) -> KvCommand {
    synod_kv::parse(args)
        .unwrap_or_else(|reply| panic!("mixed command {args:?} does not parse: {reply:?}"))
}

/// One random command as the server would log it: a data command, a
/// script run (`EVAL`, as the front end turns it into a log entry) or a
/// transaction of data commands (`MULTI` .. `EXEC`).
pub(crate) fn random_command(rng: &mut ChaCha8Rng) -> KvCommand {
    match rng.gen_range(0..25) {
        20 => wide::eval(rng),
        21 | 22 => wide::list_push(rng),
        0 | 1 => {
            let script = pick(rng, SCRIPTS);
            KvCommand::Eval(Box::new(EvalCommand {
                script: Bytes::from(script),
                keys: vec![Bytes::from(any_key(rng)), Bytes::from(any_key(rng))],
                args: vec![Bytes::from(pick(rng, MEMBERS))],
                read_only: false,
                function: None,
                user: None,
                instructions_max: APPLY_LIMITS.instructions_max,
            }))
        }
        2 => {
            let len = rng.gen_range(2..=4);
            KvCommand::Exec((0..len).map(|_| parse(&random_args(rng))).collect())
        }
        _ => {
            let args = random_args(rng);
            wide::command(rng, args)
        }
    }
}

/// The ACL users mixed commands run as (`default` is never changed: the
/// other clients' commands go without a user, so it would change nothing).
const USERS: &[&str] = &["m-u0", "m-u1", "default"];

/// The rules an `ACL SETUSER` of a mixed user gives (a few of each kind).
fn random_rules(rng: &mut ChaCha8Rng) -> Vec<Bytes> {
    let mut rules = vec![if rng.gen_bool(0.8) { "on" } else { "off" }, "nopass"];
    rules.push("resetkeys");
    rules.extend(match rng.gen_range(0..4) {
        0 => &["~m:*"][..],
        1 => &["~m:h*", "~m:s*"][..],
        2 => &["~m:z*", "~m:l*", "~m:c*"][..],
        _ => &["allkeys"][..],
    });
    rules.extend(match rng.gen_range(0..4) {
        0 => &["+@all"][..],
        1 => &["+@all", "-@set"][..],
        2 => &["nocommands", "+@read", "+@hash", "+@list"][..],
        _ => &["+@all", "-zadd", "-eval"][..],
    });
    rules
        .into_iter()
        .map(|rule| Bytes::from_static(rule.as_bytes()))
        .collect()
}

impl World {
    /// `command` as a mixed one goes to the log: most of the time as it
    /// is; one in three as a user's (see the module docs), with `node`'s
    /// stamp of that user's rules (a random one now and then, as a command
    /// checked against rules changed since); or replaced by a change of a
    /// user's rules.
    fn as_some_user(&mut self, node: usize, command: KvCommand) -> KvCommand {
        let rng = &mut self.mixed_rng;
        let user = Bytes::from_static(pick(rng, USERS).as_bytes());
        match rng.gen_range(0..24) {
            0 | 1 if user != "default" => KvCommand::Acl(synod_kv::AclCommand::SetUser {
                name: user,
                rules: random_rules(rng),
            }),
            2 if user != "default" => {
                KvCommand::Acl(synod_kv::AclCommand::DelUser { names: vec![user] })
            }
            0..=9 => {
                let stamp = match self.nodes[node].kv().and_then(|kv| kv.rules_stamp(&user)) {
                    Some(stamp) if self.mixed_rng.gen_bool(0.9) => stamp,
                    _ => self.mixed_rng.gen(),
                };
                let mut command = command;
                if let KvCommand::Eval(eval) = &mut command {
                    // As the front end sends a user's script.
                    eval.user = Some(user.clone());
                }
                KvCommand::AsUser(Box::new(synod_kv::AsUser {
                    user,
                    stamp,
                    command,
                }))
            }
            _ => command,
        }
    }

    /// On a node's tick: propose the mixed commands due since the last
    /// tick (see the module docs).
    pub(crate) fn propose_mixed(&mut self, node: usize) {
        // Each proposal adds one in flight: at most `IN_FLIGHT_MAX` rounds.
        while self.maybe_mixed(node) {}
    }

    /// Proposes a mixed command if one is due; whether it did.
    fn maybe_mixed(&mut self, node: usize) -> bool {
        let every_us = self.params.mixed_every_us;
        if every_us == 0
            || self.phase == crate::world::Phase::Settle
            || self.nodes[node].mixed_in_flight >= IN_FLIGHT_MAX
            || self.now_us < self.nodes[node].next_mixed_us
        {
            return false;
        }
        let Some(engine) = self.nodes[node].engine.as_ref() else {
            return false;
        };
        if engine.replica.status().role != RoleKind::Leader {
            return false;
        }
        // From the last one's due time, so that several fall in one tick
        // when they come faster than ticks.
        let jitter = self.mixed_rng.gen_range(0..=every_us);
        let from = self.nodes[node]
            .next_mixed_us
            .max(self.now_us - self.now_us.min(10_000));
        self.nodes[node].next_mixed_us = from + every_us / 2 + jitter;
        let command = random_command(&mut self.mixed_rng);
        let command = self.as_some_user(node, command);
        self.stats.mixed_proposed += 1;
        let bytes = payload(self.stats.mixed_proposed, &command);
        self.proposed.insert(bytes.clone());
        self.nodes[node].mixed_in_flight += 1;
        let token = Token {
            client: MIXED_CLIENT,
            seq: self.stats.mixed_proposed,
            attempt: 1,
        };
        if let Some(engine) = self.nodes[node].engine.as_mut() {
            engine.request(Kind::Command, bytes, token);
        }
        true
    }

    /// A node's mixed command was answered (applied, or failed).
    pub(crate) fn mixed_answered(&mut self, node: usize, applied: bool) {
        let sim_node = &mut self.nodes[node];
        sim_node.mixed_in_flight = sim_node.mixed_in_flight.saturating_sub(1);
        if applied {
            self.stats.mixed_applied += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::collections::BTreeSet;

    /// Every generated command parses (a generator bug would otherwise
    /// show only as a panic deep in a seed), round-trips through synod-kv's
    /// encoding, and the mix covers the command kinds it is meant to.
    #[test]
    fn generated_commands_parse_round_trip_and_cover_the_kinds() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut names = BTreeSet::new();
        for _ in 0..20_000 {
            let command = random_command(&mut rng);
            let bytes = payload(1, &command);
            let decoded = KvCommand::decode(command_bytes(&bytes).unwrap()).unwrap();
            assert_eq!(decoded, command);
            names.insert(command.name());
        }
        for name in [
            "eval",
            "exec",
            "hset",
            "spop",
            "zadd",
            "sort",
            "lmove",
            "rename",
            "restore",
            "dump",
            "object",
            "smismember",
            "zmscore",
            "lpos",
            "hstrlen",
            "setex",
            "psetex",
            "msetnx",
            "getrange",
            "lcs",
        ] {
            assert!(
                names.iter().any(|n| n.eq_ignore_ascii_case(name)),
                "{name} never drawn: {names:?}"
            );
        }
        assert!(names.len() >= 100, "only {} kinds: {names:?}", names.len());
    }

    #[test]
    fn other_payloads_are_not_mixed_ones() {
        assert_eq!(command_bytes(b"synod-sim: expire sweep"), None);
        assert_eq!(command_bytes(MIXED), None);
    }
}
