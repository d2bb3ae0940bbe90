//! ACL users with Redis 7.0's semantics for the commonly used subset: what a
//! user is, how `ACL SETUSER` rules change one, and what a user may run.
//!
//! The [`Users`] table is part of the replicated state: it changes only when
//! an `ACL SETUSER`/`ACL DELUSER` log command is applied, identically on every
//! replica, and it travels in snapshots (see `acl_snapshot`). So every node
//! enforces the same rules once it has applied the same log.
//!
//! **Connections.** A connection starts as `default`, authenticated only if
//! `default` is on and needs no password. Each command is checked against
//! the connection's user *as this node holds it now*, so a rule changed on
//! any node applies to open connections once this node applied it (a node
//! behind the log enforces the older rules until it catches up; reads of the
//! users, `ACL GETUSER/LIST/USERS`, are linearizable). A connection whose
//! user was deleted (or deleted and created again: users carry a serial) or
//! turned `off` is answered one `NOAUTH` error and closed at its next
//! command. (Redis closes connections of a deleted user at once and lets
//! those of a disabled user go on; closing both is the safer reading.)
//!
//! **`--password`.** The table starts with `default` marked
//! `password_from_config`: while it is, a node with `--password` (or
//! `--password-file`, `SYNOD_PASSWORD`) enforces that password for
//! `default` instead of `nopass`. The first ACL rule that sets `default`'s
//! passwords (`>`, `<`, `#`, `!`, `nopass`, `resetpass`, `reset`) clears the
//! mark for good, on every node: from then on the replicated passwords rule
//! and `--password` is ignored. Other rules on `default` (`-@dangerous`)
//! keep the mark. Nodes of one cluster should be given the same password.
//!
//! Safety rules this file keeps:
//! 1. **No cleartext password is stored.** A password is kept only as its
//!    SHA-256; `>password` rules are turned into `#hash` by the front end
//!    before they enter the log (see `acl_conn`), so the log and the WAL never
//!    hold a cleartext password either.
//! 2. **Rules are atomic.** `ACL SETUSER` applies its rules to a copy and
//!    commits only if every rule is valid, as Redis does.
//! 3. **Default deny.** A new user is `off`, has no password, no command and
//!    no key: it can do nothing until rules grant it.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::acl_categories::{self, categories, category, is_container};
use crate::glob::glob_match;

/// The user every connection starts as.
pub const DEFAULT_USER: &str = "default";
/// A SHA-256 digest.
pub type PasswordHash = [u8; 32];
/// Longest user name accepted (bounds the table and log commands).
pub const USER_NAME_LEN_MAX: usize = 256;
/// Most users the table holds (each `ACL SETUSER` of a new name adds one).
pub const USERS_MAX: usize = 10_000;
/// Most passwords, key patterns, channel patterns or command rules per user.
pub const USER_ITEMS_MAX: usize = 1_000;

/// SHA-256 of a password, as stored and as `#<hex>` rules give it.
pub fn hash_password(password: &[u8]) -> PasswordHash {
    Sha256::digest(password).into()
}

/// Lowercase hex of a digest (what `ACL GETUSER` shows).
pub fn hex(hash: &PasswordHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 lowercase hex digits (Redis 7.0 refuses uppercase too).
fn parse_hex(text: &[u8]) -> Option<PasswordHash> {
    if text.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// What a command rule names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `@category`.
    Category(&'static str),
    /// `command` or `command|first-arg` (a container's subcommand, or for
    /// other commands the first argument, as Redis 7.0 allows: `+select|0`).
    Command { name: String, sub: Option<String> },
}

/// One `+`/`-` rule, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CommandRule {
    pub allow: bool,
    pub target: Target,
}

impl CommandRule {
    fn describe(&self) -> String {
        let sign = if self.allow { '+' } else { '-' };
        match &self.target {
            Target::Category(c) => format!("{sign}@{c}"),
            Target::Command { name, sub: None } => format!("{sign}{name}"),
            Target::Command {
                name,
                sub: Some(sub),
            } => format!("{sign}{name}|{sub}"),
        }
    }
}

/// One ACL user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub(crate) name: Bytes,
    /// Unique per creation: a user deleted and created again under the same
    /// name is a different user, so connections of the old one are closed.
    pub(crate) serial: u64,
    pub(crate) enabled: bool,
    pub(crate) nopass: bool,
    pub(crate) passwords: BTreeSet<PasswordHash>,
    /// Only for `default`: its password is the node's `--password` (when
    /// one is given) until an ACL rule sets its passwords. See
    /// [`User::effective`].
    pub(crate) password_from_config: bool,
    /// `+@all` (true) or `-@all` (false), before the rules.
    pub(crate) commands_base_allow: bool,
    pub(crate) command_rules: Vec<CommandRule>,
    pub(crate) all_keys: bool,
    pub(crate) key_patterns: Vec<Bytes>,
    pub(crate) all_channels: bool,
    pub(crate) channel_patterns: Vec<Bytes>,
}

/// The last [`User::rules_stamp`] computed, with the users' version
/// ([`crate::Acl::generation`]) and the user's serial it was computed
/// for: while both are the same, so are the user's rules, and the stamp is
/// reused instead of hashed again (every command is stamped at its node's
/// front end, and checked against it at every replica's apply). Used by
/// one thread at a time; atomics only so that its owner stays `Sync`.
#[derive(Debug, Default)]
pub(crate) struct StampCache {
    /// `generation + 1`, 0 for nothing cached.
    generation: std::sync::atomic::AtomicU64,
    serial: std::sync::atomic::AtomicU64,
    stamp: std::sync::atomic::AtomicU64,
}

impl StampCache {
    /// `user.rules_stamp()`, where `generation` is the users' version read
    /// under the same guard as `user`.
    pub(crate) fn stamp(&self, generation: u64, user: &User) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        let key = generation.wrapping_add(1);
        if self.generation.load(Relaxed) == key && self.serial.load(Relaxed) == user.serial {
            return self.stamp.load(Relaxed);
        }
        let stamp = user.rules_stamp();
        self.generation.store(key, Relaxed);
        self.serial.store(user.serial, Relaxed);
        self.stamp.store(stamp, Relaxed);
        stamp
    }
}

/// Redis' error for a bad `ACL SETUSER` modifier.
fn modifier_error(rule: &[u8], why: &str) -> String {
    format!(
        "ERR Error in ACL SETUSER modifier '{}': {why}",
        String::from_utf8_lossy(rule).replace(['\r', '\n'], " ")
    )
}

const UNKNOWN_NAME: &str = "Unknown command or category name in ACL";
const SYNTAX: &str = "Syntax error";

impl User {
    /// A new user as Redis 7.0 creates one: off, no password, no commands,
    /// no keys, no channels.
    pub(crate) fn new(name: Bytes, serial: u64) -> User {
        User {
            name,
            serial,
            enabled: false,
            nopass: false,
            passwords: BTreeSet::new(),
            password_from_config: false,
            commands_base_allow: false,
            command_rules: Vec::new(),
            all_keys: false,
            key_patterns: Vec::new(),
            all_channels: false,
            channel_patterns: Vec::new(),
        }
    }

    /// The `default` user of a fresh table: on, `nopass` (or the node's
    /// `--password`), every command, every key, every channel.
    fn default_user() -> User {
        User {
            enabled: true,
            nopass: true,
            password_from_config: true,
            commands_base_allow: true,
            all_keys: true,
            all_channels: true,
            ..User::new(Bytes::from_static(DEFAULT_USER.as_bytes()), 0)
        }
    }

    /// The user's name.
    pub fn name(&self) -> &Bytes {
        &self.name
    }

    /// Whether the user may log in and its connections may run commands.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The user as this node enforces it: for `default` while its password
    /// comes from the configuration, `config_password` (the node's
    /// `--password`) replaces `nopass`.
    pub fn effective(&self, config_password: Option<&PasswordHash>) -> User {
        let mut user = self.clone();
        if let (true, Some(hash)) = (self.password_from_config, config_password) {
            user.nopass = false;
            user.passwords = BTreeSet::from([*hash]);
        }
        user
    }

    /// Applies one `ACL SETUSER` rule.
    pub(crate) fn apply_rule(&mut self, rule: &[u8]) -> Result<(), String> {
        let lower = rule.to_ascii_lowercase();
        let err = |why: &str| Err(modifier_error(rule, why));
        match lower.as_slice() {
            b"on" => self.enabled = true,
            b"off" => self.enabled = false,
            b"nopass" => {
                self.nopass = true;
                self.passwords.clear();
                self.password_from_config = false;
            }
            b"resetpass" => {
                self.nopass = false;
                self.passwords.clear();
                self.password_from_config = false;
            }
            b"allkeys" => {
                self.all_keys = true;
                self.key_patterns.clear();
            }
            b"resetkeys" => {
                self.all_keys = false;
                self.key_patterns.clear();
            }
            b"allchannels" => {
                self.all_channels = true;
                self.channel_patterns.clear();
            }
            b"resetchannels" => {
                self.all_channels = false;
                self.channel_patterns.clear();
            }
            b"allcommands" | b"+@all" => self.set_commands_base(true),
            b"nocommands" | b"-@all" => self.set_commands_base(false),
            b"sanitize-payload" | b"skip-sanitize-payload" => {}
            b"reset" => {
                for part in ["resetpass", "resetkeys", "resetchannels", "off", "-@all"] {
                    self.apply_rule(part.as_bytes())?;
                }
            }
            _ => match rule.first() {
                Some(b'>') => self.add_password(hash_password(&rule[1..]))?,
                Some(b'<') => {
                    if !self.remove_password(&hash_password(&rule[1..])) {
                        return err(
                            "The password you are trying to remove from the user does not exist",
                        );
                    }
                }
                Some(b'#') | Some(b'!') => {
                    let Some(hash) = parse_hex(&rule[1..]) else {
                        return err("The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters");
                    };
                    if rule[0] == b'#' {
                        self.add_password(hash)?;
                    } else if !self.remove_password(&hash) {
                        return err(
                            "The password you are trying to remove from the user does not exist",
                        );
                    }
                }
                Some(b'~') => {
                    if self.all_keys {
                        return err("Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns");
                    }
                    let pattern = Bytes::copy_from_slice(&rule[1..]);
                    if pattern.as_ref() == b"*" {
                        self.all_keys = true;
                        self.key_patterns.clear();
                    } else if !self.key_patterns.contains(&pattern) {
                        bounded(self.key_patterns.len(), rule)?;
                        self.key_patterns.push(pattern);
                    }
                }
                Some(b'%') => {
                    // %R~ / %W~ / %RW~: only %RW~ (same as ~) is supported.
                    match lower.strip_prefix(b"%rw~".as_slice()) {
                        Some(_) => return self.apply_rule(&[b"~", &rule[4..]].concat()),
                        None => {
                            return err("Synod supports only read-write key patterns (~ or %RW~)")
                        }
                    }
                }
                Some(b'&') => {
                    if self.all_channels {
                        return err("Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels");
                    }
                    let pattern = Bytes::copy_from_slice(&rule[1..]);
                    if pattern.as_ref() == b"*" {
                        self.all_channels = true;
                        self.channel_patterns.clear();
                    } else if !self.channel_patterns.contains(&pattern) {
                        bounded(self.channel_patterns.len(), rule)?;
                        self.channel_patterns.push(pattern);
                    }
                }
                Some(sign @ (b'+' | b'-')) => {
                    let allow = *sign == b'+';
                    let text = std::str::from_utf8(&lower[1..])
                        .map_err(|_| modifier_error(rule, UNKNOWN_NAME))?;
                    self.add_command_rule(allow, text)
                        .map_err(|why| modifier_error(rule, why))?;
                }
                _ => return err(SYNTAX),
            },
        }
        Ok(())
    }

    fn add_password(&mut self, hash: PasswordHash) -> Result<(), String> {
        if !self.passwords.contains(&hash) {
            bounded(self.passwords.len(), b"password")?;
        }
        self.passwords.insert(hash);
        self.nopass = false;
        self.password_from_config = false;
        Ok(())
    }

    fn remove_password(&mut self, hash: &PasswordHash) -> bool {
        self.password_from_config = false;
        self.passwords.remove(hash)
    }

    fn set_commands_base(&mut self, allow: bool) {
        self.commands_base_allow = allow;
        self.command_rules.clear();
    }

    fn add_command_rule(&mut self, allow: bool, text: &str) -> Result<(), &'static str> {
        if let Some(name) = text.strip_prefix('@') {
            let cat = category(name).ok_or(UNKNOWN_NAME)?;
            self.command_rules
                .retain(|r| r.target != Target::Category(cat));
            bounded(self.command_rules.len(), b"").map_err(|_| "Too many rules")?;
            self.command_rules.push(CommandRule {
                allow,
                target: Target::Category(cat),
            });
            return Ok(());
        }
        let mut parts = text.split('|');
        let name = parts.next().unwrap_or_default();
        let sub = parts.next();
        if parts.next().is_some() {
            return Err(if is_container(name) {
                "Allowing first-arg of a subcommand is not supported"
            } else {
                UNKNOWN_NAME
            });
        }
        if !acl_categories::is_command(name) {
            return Err(UNKNOWN_NAME);
        }
        if let Some(sub) = sub {
            if sub.is_empty() || (is_container(name) && !acl_categories::has_subcommand(name, sub))
            {
                return Err(UNKNOWN_NAME);
            }
        }
        // A rule on the whole command engulfs earlier rules on it and on its
        // subcommands; a rule on a subcommand replaces an earlier one on the
        // same subcommand (Redis 7.0).
        self.command_rules.retain(|r| match &r.target {
            Target::Command { name: n, sub: s } => {
                !(n == name && (sub.is_none() || s.as_deref() == sub))
            }
            Target::Category(_) => true,
        });
        // A rule that changes nothing is not kept, so GETUSER shows what
        // Redis shows (`+@all +client|id` is `+@all`).
        let already = self.command_allowed(name, sub) == allow
            && (sub.is_some()
                || !self
                    .command_rules
                    .iter()
                    .any(|r| matches!(&r.target, Target::Command { name: n, .. } if n == name)));
        if !already {
            bounded(self.command_rules.len(), b"").map_err(|_| "Too many rules")?;
            self.command_rules.push(CommandRule {
                allow,
                target: Target::Command {
                    name: name.to_string(),
                    sub: sub.map(str::to_string),
                },
            });
        }
        Ok(())
    }

    /// Whether the user may run `name` (lowercase) with first argument
    /// `first_arg` (lowercase; the subcommand of a container). The last rule
    /// that matches decides; none matching leaves `+@all`/`-@all`.
    pub fn command_allowed(&self, name: &str, first_arg: Option<&str>) -> bool {
        if self.command_rules.is_empty() {
            // No rule can match: the base decides (and finding the
            // command's categories, a search by name, is skipped).
            return self.commands_base_allow;
        }
        let sub = if is_container(name) { first_arg } else { None };
        let cats = categories(name, sub);
        let mut allowed = self.commands_base_allow;
        for rule in &self.command_rules {
            let matches = match &rule.target {
                Target::Category(c) => cats.contains(c),
                Target::Command { name: n, sub: None } => n == name,
                Target::Command {
                    name: n,
                    sub: Some(s),
                } => n == name && first_arg == Some(s.as_str()),
            };
            if matches {
                allowed = rule.allow;
            }
        }
        allowed
    }

    /// Whether every command is allowed (`+@all` and no rule after it,
    /// as for the default user): the check per command is then free.
    pub(crate) fn allows_every_command(&self) -> bool {
        self.commands_base_allow && self.command_rules.is_empty()
    }

    /// Whether a `name|first-arg` rule of this user names the command.
    pub(crate) fn has_first_arg_rule(&self, name: &str) -> bool {
        self.command_rules.iter().any(
            |rule| matches!(&rule.target, Target::Command { name: n, sub: Some(_) } if n == name),
        )
    }

    /// A stamp of everything that decides what this user may run: its
    /// serial, whether it is on, its command rules, key and channel
    /// patterns (not its passwords). Commands travel in the log with the
    /// stamp of the rules the proposing node checked them against, and
    /// every replica applies them only if the user's rules at that point of
    /// the log have the same stamp (see `KvCommand::AsUser`). Part of the
    /// log format: computed from an explicit encoding with xxh3, never
    /// from `Hash`, so every build and every replay gets the same value.
    pub fn rules_stamp(&self) -> u64 {
        let mut hash = xxhash_rust::xxh3::Xxh3::new();
        let flags = [
            u8::from(self.enabled),
            u8::from(self.commands_base_allow),
            u8::from(self.all_keys),
            u8::from(self.all_channels),
        ];
        hash.update(&self.serial.to_le_bytes());
        hash.update(&flags);
        // Each list with its length, each entry with its own, so that no
        // two different lists hash the same bytes.
        let mut put = |bytes: &[u8]| {
            hash.update(&(bytes.len() as u64).to_le_bytes());
            hash.update(bytes);
        };
        put(&(self.command_rules.len() as u64).to_le_bytes());
        for rule in &self.command_rules {
            put(&[u8::from(rule.allow)]);
            match &rule.target {
                Target::Category(category) => {
                    put(b"@");
                    put(category.as_bytes());
                }
                Target::Command { name, sub } => {
                    put(b"+");
                    put(name.as_bytes());
                    put(sub.as_deref().unwrap_or_default().as_bytes());
                    put(&[u8::from(sub.is_some())]);
                }
            }
        }
        put(&(self.key_patterns.len() as u64).to_le_bytes());
        for pattern in &self.key_patterns {
            put(pattern);
        }
        put(&(self.channel_patterns.len() as u64).to_le_bytes());
        for pattern in &self.channel_patterns {
            put(pattern);
        }
        hash.digest()
    }

    /// Whether the user may touch `key`.
    pub fn key_allowed(&self, key: &[u8]) -> bool {
        self.all_keys || self.key_patterns.iter().any(|p| glob_match(p, key))
    }

    /// Whether the user may publish to or subscribe to `channel` (one of
    /// its `&patterns` matches it) or, with `literal`, PSUBSCRIBE to the
    /// pattern `channel` (one of its `&patterns` is exactly it: as in
    /// Redis, a subscription pattern is never matched as a glob).
    pub fn channel_allowed(&self, channel: &[u8], literal: bool) -> bool {
        self.all_channels
            || self.channel_patterns.iter().any(|p| {
                if literal {
                    p.as_ref() == channel
                } else {
                    glob_match(p, channel)
                }
            })
    }

    /// `+@all -@string +incr` style, as `ACL GETUSER`'s `commands`.
    pub fn describe_commands(&self) -> String {
        let mut out = String::from(if self.commands_base_allow {
            "+@all"
        } else {
            "-@all"
        });
        for rule in &self.command_rules {
            out.push(' ');
            out.push_str(&rule.describe());
        }
        out
    }

    /// `~*` or `~a ~b` (empty when no key is allowed), as GETUSER's `keys`.
    pub fn describe_keys(&self) -> String {
        describe_patterns('~', self.all_keys, &self.key_patterns)
    }

    /// `&*` or `&a &b`, as GETUSER's `channels`.
    pub fn describe_channels(&self) -> String {
        describe_patterns('&', self.all_channels, &self.channel_patterns)
    }

    /// One line of `ACL LIST`: `user alice on #<hash> ~k:* resetchannels -@all +get`.
    pub fn describe(&self) -> String {
        let mut parts = vec![
            format!("user {}", String::from_utf8_lossy(&self.name)),
            (if self.enabled { "on" } else { "off" }).to_string(),
        ];
        if self.nopass {
            parts.push("nopass".into());
        }
        parts.extend(self.passwords.iter().map(|h| format!("#{}", hex(h))));
        let keys = self.describe_keys();
        if !keys.is_empty() {
            parts.push(keys);
        }
        let channels = self.describe_channels();
        parts.push(if channels.is_empty() {
            "resetchannels".into()
        } else {
            channels
        });
        parts.push(self.describe_commands());
        parts.join(" ")
    }
}

fn describe_patterns(sigil: char, all: bool, patterns: &[Bytes]) -> String {
    if all {
        return format!("{sigil}*");
    }
    patterns
        .iter()
        .map(|p| format!("{sigil}{}", String::from_utf8_lossy(p)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn bounded(len: usize, what: &[u8]) -> Result<(), String> {
    if len >= USER_ITEMS_MAX {
        return Err(modifier_error(
            what,
            &format!("a user may have at most {USER_ITEMS_MAX} of these"),
        ));
    }
    Ok(())
}

/// Redis' check on user names.
pub(crate) fn valid_user_name(name: &[u8]) -> Result<(), String> {
    if name.iter().any(|b| *b == b' ' || *b == 0) {
        return Err("ERR Usernames can't contain spaces or null characters".into());
    }
    if name.is_empty() || name.len() > USER_NAME_LEN_MAX {
        return Err(format!(
            "ERR Usernames must be 1 to {USER_NAME_LEN_MAX} bytes long"
        ));
    }
    Ok(())
}

/// The replicated table of users. Always holds `default`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Users {
    pub(crate) map: BTreeMap<Bytes, User>,
    /// The serial the next created user gets.
    pub(crate) next_serial: u64,
}

impl Default for Users {
    fn default() -> Users {
        let default = User::default_user();
        Users {
            map: BTreeMap::from([(default.name.clone(), default)]),
            next_serial: 1,
        }
    }
}

impl Users {
    /// The user called `name`.
    pub fn get(&self, name: &[u8]) -> Option<&User> {
        self.map.get(name)
    }

    /// Every user, by name.
    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.map.values()
    }

    /// `ACL SETUSER name rules...`: creates the user if needed, then applies
    /// every rule, atomically (all or nothing).
    pub fn set_user(&mut self, name: &[u8], rules: &[Bytes]) -> Result<(), String> {
        valid_user_name(name)?;
        let mut user = match self.map.get(name) {
            Some(user) => user.clone(),
            None if self.map.len() >= USERS_MAX => {
                return Err(format!("ERR at most {USERS_MAX} ACL users"))
            }
            None => User::new(Bytes::copy_from_slice(name), self.next_serial),
        };
        for rule in rules {
            user.apply_rule(rule)?;
        }
        if user.serial == self.next_serial {
            self.next_serial += 1;
        }
        self.map.insert(user.name.clone(), user);
        Ok(())
    }

    /// `ACL DELUSER names...`: how many existed. `default` cannot go.
    pub fn del_users(&mut self, names: &[Bytes]) -> Result<i64, String> {
        if names.iter().any(|n| n.as_ref() == DEFAULT_USER.as_bytes()) {
            return Err("ERR The 'default' user cannot be removed".into());
        }
        Ok(names
            .iter()
            .filter(|n| self.map.remove(n.as_ref()).is_some())
            .count() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Vec<Bytes> {
        text.split_whitespace()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    fn user(text: &str) -> User {
        let mut users = Users::default();
        users.set_user(b"u", &rules(text)).expect("valid rules");
        users.get(b"u").unwrap().clone()
    }

    #[test]
    fn new_users_can_do_nothing() {
        let u = user("");
        assert!(!u.enabled);
        assert!(!u.command_allowed("get", None));
        assert!(!u.key_allowed(b"k"));
        assert_eq!(u.describe(), "user u off resetchannels -@all");
    }

    #[test]
    fn categories_and_commands_last_rule_wins() {
        let u = user("on +@all -@string +incr -select|1");
        assert!(u.command_allowed("hget", None));
        assert!(!u.command_allowed("get", None));
        assert!(u.command_allowed("incr", None));
        let u = user("-@all +@read -get");
        assert!(u.command_allowed("hget", None));
        assert!(!u.command_allowed("get", None));
        assert!(!u.command_allowed("set", None));
        assert_eq!(u.describe_commands(), "-@all +@read -get");
    }

    #[test]
    fn subcommands_engulf_as_redis_does() {
        assert_eq!(
            user("+select|0").describe_commands(),
            "-@all +select|0",
            "first-arg rules on non-containers are kept"
        );
        let u = user("+acl|whoami");
        assert!(u.command_allowed("acl", Some("whoami")));
        assert!(!u.command_allowed("acl", Some("setuser")));
        assert_eq!(user("+acl|whoami +acl").describe_commands(), "-@all +acl");
        assert_eq!(user("+@all +client|id").describe_commands(), "+@all");
        assert_eq!(
            user("+@all -client +client|id").describe_commands(),
            "+@all -client +client|id"
        );
        assert_eq!(
            user("+@all -client|list").describe_commands(),
            "+@all -client|list"
        );
        assert_eq!(user("+@all -@string").describe_commands(), "+@all -@string");
        assert_eq!(
            user("+@all -@string allcommands").describe_commands(),
            "+@all"
        );
    }

    #[test]
    fn key_patterns() {
        let u = user("~user:* ~cache:?");
        assert!(u.key_allowed(b"user:1"));
        assert!(u.key_allowed(b"cache:a"));
        assert!(!u.key_allowed(b"cache:ab"));
        assert!(!u.key_allowed(b"other"));
        assert_eq!(u.describe_keys(), "~user:* ~cache:?");
        assert!(user("allkeys").key_allowed(b"x"));
        assert!(!user("allkeys resetkeys").key_allowed(b"x"));
        let mut users = Users::default();
        let err = users.set_user(b"u", &rules("~* ~a")).unwrap_err();
        assert!(
            err.contains("Adding a pattern after the * pattern"),
            "{err}"
        );
    }

    #[test]
    fn passwords_are_hashed_and_removable() {
        let u = user(">secret");
        assert_eq!(u.passwords, BTreeSet::from([hash_password(b"secret")]));
        let h = hex(&hash_password(b"secret"));
        assert_eq!(h.len(), 64);
        let u2 = user(&format!("#{h}"));
        assert_eq!(u.passwords, u2.passwords);
        assert!(user(&format!(">secret !{h}")).passwords.is_empty());
        let mut users = Users::default();
        let err = users.set_user(b"u", &rules("<nothere")).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        let err = users
            .set_user(b"u", &rules(&format!("#{}", h.to_uppercase())))
            .unwrap_err();
        assert!(
            err.starts_with("ERR Error in ACL SETUSER modifier"),
            "{err}"
        );
        assert!(user("nopass").nopass);
        assert!(!user(">a resetpass").nopass);
        assert!(user(">a resetpass").passwords.is_empty());
    }

    #[test]
    fn setuser_is_atomic_and_errors_as_redis() {
        let mut users = Users::default();
        users.set_user(b"u", &rules("on >a")).unwrap();
        let before = users.clone();
        let err = users.set_user(b"u", &rules("off +nosuch")).unwrap_err();
        assert_eq!(
            err,
            "ERR Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL"
        );
        assert_eq!(users, before, "a bad rule changes nothing");
        let err = users.set_user(b"u", &rules("+@nosuch")).unwrap_err();
        assert!(err.ends_with(UNKNOWN_NAME), "{err}");
        assert!(users
            .set_user(b"u", &rules("bogus"))
            .unwrap_err()
            .ends_with(SYNTAX));
        assert!(users
            .set_user(b"a a", &[])
            .unwrap_err()
            .contains("Usernames can't contain spaces or null characters"));
        assert!(users
            .set_user(b"u", &rules("+config|get|x"))
            .unwrap_err()
            .contains("Allowing first-arg of a subcommand is not supported"));
    }

    #[test]
    fn reset_and_delete_and_serials() {
        let mut users = Users::default();
        users.set_user(b"u", &rules("on nopass +@all ~*")).unwrap();
        let serial = users.get(b"u").unwrap().serial;
        users.set_user(b"u", &rules("reset")).unwrap();
        let u = users.get(b"u").unwrap();
        assert_eq!(u.describe(), "user u off resetchannels -@all");
        assert_eq!(u.serial, serial, "changing a user keeps its identity");
        assert_eq!(users.del_users(&rules("u nosuch")), Ok(1));
        users.set_user(b"u", &[]).unwrap();
        assert_ne!(users.get(b"u").unwrap().serial, serial, "a new user");
        assert!(users.del_users(&rules("default")).is_err());
    }

    #[test]
    fn default_user_takes_the_configured_password_until_acl_sets_one() {
        let users = Users::default();
        let default = users.get(b"default").unwrap();
        assert_eq!(default.describe(), "user default on nopass ~* &* +@all");
        let config = hash_password(b"pw");
        let effective = default.effective(Some(&config));
        assert!(!effective.nopass);
        assert!(effective.passwords.contains(&config));
        let mut users = users;
        users.set_user(b"default", &rules(">other")).unwrap();
        let effective = users.get(b"default").unwrap().effective(Some(&config));
        assert_eq!(
            effective.passwords,
            BTreeSet::from([hash_password(b"other")]),
            "an ACL password replaces --password"
        );
        users.set_user(b"default", &rules("-@dangerous")).unwrap();
        assert!(!users
            .get(b"default")
            .unwrap()
            .command_allowed("flushall", None));
    }
}
