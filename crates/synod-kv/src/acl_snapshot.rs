//! The users section of a KV snapshot.
//!
//! The keyspace snapshot (`snapshot.rs`) is left as it is; the users travel
//! in a trailer after it:
//! ```text
//! keyspace snapshot | users section | section length u64 | "SYNODACL"
//! users section: version u8 | next serial u64 | user count u32 | user*
//!                | xxh3_64 of the section before it
//! user: name | serial u64 | flags u8 | password hashes (u32 n + 32-byte
//!       strings) | rules (u32 n + (allow u8, kind u8, name, has sub u8,
//!       sub)) | key patterns (u32 n + strings) | channel patterns (same)
//! ```
//! Strings are `u32` length + bytes, integers little-endian. A state whose
//! users are the initial table (only an untouched `default`) writes no
//! trailer, so its snapshot is byte-identical to one of a build without
//! ACLs, and either build reads the other's. The keyspace snapshot ends with
//! its checksum, so telling the two apart by the last 8 bytes can misread
//! one snapshot in 2^64; the section's own checksum then fails the restore
//! rather than restoring garbage.

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64;

use crate::acl::{valid_user_name, CommandRule, Target, User, Users, DEFAULT_USER};
use crate::acl_categories::category;
use crate::wire::{DecodeError, Reader, Writer};

const TRAILER_MAGIC: &[u8; 8] = b"SYNODACL";
const USERS_FORMAT_VERSION: u8 = 1;

mod flag {
    pub const ENABLED: u8 = 1;
    pub const NOPASS: u8 = 2;
    pub const PASSWORD_FROM_CONFIG: u8 = 4;
    pub const COMMANDS_BASE_ALLOW: u8 = 8;
    pub const ALL_KEYS: u8 = 16;
    pub const ALL_CHANNELS: u8 = 32;
    pub const ALL: u8 = 63;
}

/// Appends the users trailer to a keyspace snapshot (none for the initial
/// table). Reuses the snapshot's buffer when it is not shared.
pub(crate) fn append_users(keyspace_snapshot: Bytes, users: &Users) -> Bytes {
    let Some(trailer) = users_trailer(users) else {
        return keyspace_snapshot;
    };
    let mut out = match keyspace_snapshot.try_into_mut() {
        Ok(buffer) => buffer,
        Err(shared) => bytes::BytesMut::from(shared.as_ref()),
    };
    out.extend_from_slice(&trailer);
    out.freeze()
}

/// What [`append_users`] appends to a keyspace snapshot: nothing for the
/// initial table (a snapshot as earlier releases wrote it), otherwise the
/// users, their length and the trailer's magic. A snapshot streamed to its
/// file writes this after the keyspace.
pub(crate) fn users_trailer(users: &Users) -> Option<Vec<u8>> {
    if *users == Users::default() {
        return None;
    }
    let mut trailer = encode_users(users);
    let len = trailer.len() as u64;
    trailer.extend_from_slice(&len.to_le_bytes());
    trailer.extend_from_slice(TRAILER_MAGIC);
    Some(trailer)
}

/// Splits a snapshot into its keyspace part and its users (the initial
/// table when there is no trailer).
pub(crate) fn split_users(snapshot: &[u8]) -> Result<(&[u8], Users), DecodeError> {
    let Some(rest) = snapshot.strip_suffix(TRAILER_MAGIC.as_slice()) else {
        return Ok((snapshot, Users::default()));
    };
    if rest.len() < 8 {
        return Err(DecodeError::Truncated);
    }
    let (rest, len) = rest.split_at(rest.len() - 8);
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(len);
    let len = usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|_| DecodeError::Truncated)?;
    if len > rest.len() {
        return Err(DecodeError::Truncated);
    }
    let (keyspace, section) = rest.split_at(rest.len() - len);
    Ok((keyspace, decode_users(section)?))
}

fn encode_users(users: &Users) -> Vec<u8> {
    let mut writer = Writer::new();
    writer.u8(USERS_FORMAT_VERSION);
    writer.u64(users.next_serial);
    writer.len(users.map.len());
    for user in users.map.values() {
        encode_user(&mut writer, user);
    }
    let checksum = xxh3_64(writer.as_slice());
    writer.u64(checksum);
    writer.finish().to_vec()
}

fn encode_user(writer: &mut Writer, user: &User) {
    writer.bytes(&user.name);
    writer.u64(user.serial);
    let mut flags = 0;
    for (set, bit) in [
        (user.enabled, flag::ENABLED),
        (user.nopass, flag::NOPASS),
        (user.password_from_config, flag::PASSWORD_FROM_CONFIG),
        (user.commands_base_allow, flag::COMMANDS_BASE_ALLOW),
        (user.all_keys, flag::ALL_KEYS),
        (user.all_channels, flag::ALL_CHANNELS),
    ] {
        if set {
            flags |= bit;
        }
    }
    writer.u8(flags);
    writer.len(user.passwords.len());
    for hash in &user.passwords {
        writer.bytes(hash);
    }
    writer.len(user.command_rules.len());
    for rule in &user.command_rules {
        writer.bool(rule.allow);
        match &rule.target {
            Target::Category(name) => {
                writer.u8(0);
                writer.bytes(name.as_bytes());
                writer.bool(false);
            }
            Target::Command { name, sub } => {
                writer.u8(1);
                writer.bytes(name.as_bytes());
                writer.optional_bytes(
                    sub.as_ref()
                        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                        .as_ref(),
                );
            }
        }
    }
    for patterns in [&user.key_patterns, &user.channel_patterns] {
        writer.len(patterns.len());
        for pattern in patterns {
            writer.bytes(pattern);
        }
    }
}

fn decode_users(section: &[u8]) -> Result<Users, DecodeError> {
    if section.len() < 1 + 8 + 4 + 8 {
        return Err(DecodeError::Truncated);
    }
    let (contents, checksum) = section.split_at(section.len() - 8);
    if Reader::new(checksum).u64()? != xxh3_64(contents) {
        return Err(DecodeError::Checksum);
    }
    let mut reader = Reader::new(contents);
    let version = reader.u8()?;
    if version != USERS_FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let next_serial = reader.u64()?;
    // A user takes at least: name length, serial, flags, four list lengths.
    let count = reader.len(4 + 8 + 1 + 4 * 4)?;
    let mut users = Users {
        map: Default::default(),
        next_serial,
    };
    for _ in 0..count {
        let user = decode_user(&mut reader)?;
        if user.serial >= next_serial && user.name.as_ref() != DEFAULT_USER.as_bytes() {
            return Err(DecodeError::Invalid(
                "user serial not below the next serial",
            ));
        }
        if users.map.insert(user.name.clone(), user).is_some() {
            return Err(DecodeError::Invalid("duplicate user"));
        }
    }
    reader.finish()?;
    if users.get(DEFAULT_USER.as_bytes()).is_none() {
        return Err(DecodeError::Invalid("no default user"));
    }
    Ok(users)
}

fn decode_user(reader: &mut Reader<'_>) -> Result<User, DecodeError> {
    let name = reader.bytes()?;
    valid_user_name(&name).map_err(|_| DecodeError::Invalid("bad user name"))?;
    let serial = reader.u64()?;
    let flags = reader.u8()?;
    if flags & !flag::ALL != 0 {
        return Err(DecodeError::Invalid("unknown user flags"));
    }
    let has = |bit| flags & bit != 0;
    let mut passwords = std::collections::BTreeSet::new();
    for _ in 0..reader.len(4 + 32)? {
        let hash: [u8; 32] = reader
            .slice()?
            .try_into()
            .map_err(|_| DecodeError::Invalid("password hash is not 32 bytes"))?;
        passwords.insert(hash);
    }
    let rules_len = reader.len(1 + 1 + 4 + 1)?;
    let mut command_rules = Vec::with_capacity(rules_len);
    for _ in 0..rules_len {
        let allow = reader.bool()?;
        let kind = reader.u8()?;
        let name = reader.string()?;
        let sub = reader.optional_bytes()?;
        let target = match kind {
            0 => Target::Category(category(&name).ok_or(DecodeError::Invalid("unknown category"))?),
            1 => Target::Command {
                name,
                sub: sub
                    .map(|s| String::from_utf8(s.to_vec()))
                    .transpose()
                    .map_err(|_| DecodeError::Invalid("subcommand is not UTF-8"))?,
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "acl rule",
                    tag,
                })
            }
        };
        command_rules.push(CommandRule { allow, target });
    }
    let mut patterns = || -> Result<Vec<Bytes>, DecodeError> {
        let len = reader.len(4)?;
        let mut out = Vec::with_capacity(len);
        for _ in 0..len {
            out.push(reader.bytes()?);
        }
        Ok(out)
    };
    let key_patterns = patterns()?;
    let channel_patterns = patterns()?;
    Ok(User {
        name,
        serial,
        enabled: has(flag::ENABLED),
        nopass: has(flag::NOPASS),
        passwords,
        password_from_config: has(flag::PASSWORD_FROM_CONFIG),
        commands_base_allow: has(flag::COMMANDS_BASE_ALLOW),
        command_rules,
        all_keys: has(flag::ALL_KEYS),
        key_patterns,
        all_channels: has(flag::ALL_CHANNELS),
        channel_patterns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Users {
        let mut users = Users::default();
        let rules = |t: &str| -> Vec<Bytes> {
            t.split_whitespace()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect()
        };
        users
            .set_user(
                b"alice",
                &rules("on >pw ~a:* &ch +@read -get +acl|whoami +select|0"),
            )
            .unwrap();
        users.set_user(b"default", &rules("-@dangerous")).unwrap();
        users
            .set_user(b"bob", &rules("nopass allkeys allchannels"))
            .unwrap();
        users
    }

    #[test]
    fn initial_users_add_nothing() {
        let keyspace = Bytes::from_static(b"SYNODKV\0...");
        let out = append_users(keyspace.clone(), &Users::default());
        assert_eq!(out, keyspace);
        let (rest, users) = split_users(&out).unwrap();
        assert_eq!(rest, keyspace.as_ref());
        assert_eq!(users, Users::default());
    }

    #[test]
    fn users_round_trip() {
        let users = users();
        let keyspace = Bytes::from_static(b"SYNODKV\0...");
        let out = append_users(keyspace.clone(), &users);
        let (rest, back) = split_users(&out).unwrap();
        assert_eq!(rest, keyspace.as_ref());
        assert_eq!(back, users);
    }

    #[test]
    fn every_truncation_and_flip_is_refused_without_panic() {
        let out = append_users(Bytes::from_static(b"K"), &users());
        for len in 0..out.len() {
            // Either no trailer (then the keyspace reader refuses it) or an error.
            if let Ok((rest, users)) = split_users(&out[..len]) {
                assert_eq!(users, Users::default());
                assert_eq!(rest.len(), len);
            }
        }
        for i in 1..out.len() - 16 {
            let mut bad = out.to_vec();
            bad[i] ^= 0x40;
            match split_users(&bad) {
                Err(_) => {}
                Ok((rest, _)) => assert_eq!(rest, b"K".as_slice(), "flip at {i} went unnoticed"),
            }
        }
    }
}
