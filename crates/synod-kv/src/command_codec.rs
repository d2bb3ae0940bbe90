//! The binary encoding of [`KvCommand`] in the replicated log.
//!
//! Layout: a format version byte ([`COMMAND_FORMAT_VERSION`]), then the
//! command: an opcode byte and its fields in declaration order. Integers are
//! little-endian and fixed width; byte strings and lists carry a `u32`
//! length. Opcodes are part of the format: never renumber one, only add.
//! Decoding checks every length against the remaining input and rejects
//! trailing bytes, unknown tags and nested transactions.

use bytes::Bytes;

use crate::command::{
    AclCommand, BitOperation, BitUnit, BlockingKind, ExpireCondition, ExpireForm, GetExExpiry,
    KvCommand, LcsOutput, ListEnd, ObjectField, SetCondition, SetExpiry, SortCommand, TimeUnit,
};
use crate::entry::INLINE_VALUE_BYTES_MAX;
use crate::watch::{Stamp, WatchedKey};
use crate::wire::{DecodeError, Reader, Writer};

mod dump;
mod sets;

/// The format version byte every encoded command starts with.
pub const COMMAND_FORMAT_VERSION: u8 = 1;

mod op {
    pub const GET: u8 = 1;
    pub const SET: u8 = 2;
    pub const SET_NX: u8 = 3;
    pub const SET_EX: u8 = 4;
    pub const GET_SET: u8 = 5;
    pub const GET_DEL: u8 = 6;
    pub const GET_EX: u8 = 7;
    pub const M_GET: u8 = 8;
    pub const M_SET: u8 = 9;
    pub const M_SET_NX: u8 = 10;
    pub const DEL: u8 = 11;
    pub const EXISTS: u8 = 12;
    pub const INCR_BY: u8 = 13;
    pub const INCR_BY_FLOAT: u8 = 14;
    pub const APPEND: u8 = 15;
    pub const STR_LEN: u8 = 16;
    pub const GET_RANGE: u8 = 17;
    pub const SET_RANGE: u8 = 18;
    pub const EXPIRE: u8 = 19;
    pub const TTL: u8 = 20;
    pub const PERSIST: u8 = 21;
    pub const TYPE: u8 = 22;
    pub const KEYS: u8 = 23;
    pub const SCAN: u8 = 24;
    pub const DB_SIZE: u8 = 25;
    pub const FLUSH_ALL: u8 = 26;
    pub const RANDOM_KEY: u8 = 27;
    pub const H_SET: u8 = 28;
    pub const H_GET: u8 = 29;
    pub const H_DEL: u8 = 30;
    pub const H_GET_ALL: u8 = 31;
    pub const H_LEN: u8 = 32;
    pub const H_EXISTS: u8 = 33;
    pub const H_INCR_BY: u8 = 34;
    pub const PUSH: u8 = 35;
    pub const POP: u8 = 36;
    pub const L_RANGE: u8 = 37;
    pub const L_LEN: u8 = 38;
    pub const EXEC: u8 = 39;
    pub const ACL: u8 = 40;
    // Memory limit (issue 13): numbered apart from the data commands.
    pub const SET_MAX_MEMORY: u8 = 100;
    pub const MEMORY_INFO: u8 = 101;
    // The expiry sweep (keyspace notifications): numbered with them.
    pub const EXPIRE_SWEEP: u8 = 102;
    // Pub/sub (issue 16): 120 to 129.
    pub const PUBLISH: u8 = 120;
    // Scripting (issue 16): 130 to 139.
    pub const EVAL: u8 = 130;
    pub const FCALL: u8 = 131;
    // EVAL / FCALL run as an ACL user: the user's name, then EVAL's or
    // FCALL's fields.
    pub const EVAL_AS_USER: u8 = 132;
    pub const FCALL_AS_USER: u8 = 133;
    // A script with its instruction budget (a u64), then one of the four
    // above. Without it a script runs with the budget of the releases
    // before the dry run (`scripting::LEGACY_INSTRUCTIONS_MAX`), so a log
    // written by them replays as they applied it.
    pub const EVAL_BUDGET: u8 = 134;
    // Keys and strings (issue 16): 150 to 199.
    pub const RANDOM_KEY_SEEDED: u8 = 150;
    pub const RENAME: u8 = 151;
    pub const COPY: u8 = 152;
    pub const TOUCH: u8 = 153;
    pub const EXPIRE_TIME: u8 = 154;
    pub const OBJECT: u8 = 155;
    pub const SORT: u8 = 156;
    pub const SET_BIT: u8 = 157;
    pub const GET_BIT: u8 = 158;
    pub const BIT_COUNT: u8 = 159;
    pub const BIT_POS: u8 = 160;
    pub const BIT_OP: u8 = 161;
    pub const LCS: u8 = 162;
    // DUMP, RESTORE and MEMORY USAGE (issue 16): 190 to 192, in `dump`.
    // The rest of the lists and hashes (issue 16): numbered from 200.
    pub const L_INDEX: u8 = 200;
    pub const L_SET: u8 = 201;
    pub const L_INSERT: u8 = 202;
    pub const L_REM: u8 = 203;
    pub const L_TRIM: u8 = 204;
    pub const L_POS: u8 = 205;
    pub const PUSH_X: u8 = 206;
    pub const L_MOVE: u8 = 207;
    pub const L_M_POP: u8 = 208;
    pub const H_M_SET: u8 = 209;
    pub const H_M_GET: u8 = 210;
    pub const H_SET_NX: u8 = 211;
    pub const H_INCR_BY_FLOAT: u8 = 212;
    pub const H_STR_LEN: u8 = 213;
    pub const H_KEYS: u8 = 214;
    pub const H_VALS: u8 = 215;
    pub const H_RAND_FIELD: u8 = 216;
    pub const H_SCAN: u8 = 217;
    // Sets (issue 16): 220 to 231, in `sets`.
    // Transactions (issue 16): tags 232 to 239.
    pub const WATCH: u8 = 232;
    pub const WATCH_CHECK: u8 = 233;
    // Sorted sets (issue 16): tag 240, then a sub-tag byte for the whole
    // family (see `crate::codec_zset`); 241 to 247 are unused.
    pub const Z_SET: u8 = 240;
    // Blocking pops (issue 16): 248, then the kind, then the wrapped pop.
    pub const BLOCKING: u8 = 248;
    // A command with the ACL user it was checked for (stop 63): 249, the
    // user, the stamp of its rules, then the command.
    pub const AS_USER: u8 = 249;
}

/// In a blocking pop's kind byte: the try of a client that already blocked.
const BLOCKED_FLAG: u8 = 0x80;

/// The `ACL` subcommand tags after [`op::ACL`].
mod acl_op {
    pub const SET_USER: u8 = 0;
    pub const DEL_USER: u8 = 1;
    pub const GET_USER: u8 = 2;
    pub const LIST: u8 = 3;
    pub const USERS: u8 = 4;
}

impl KvCommand {
    /// The command's stable binary encoding for the replicated log.
    pub fn encode(&self) -> Bytes {
        Writer::sized(|writer| {
            writer.u8(COMMAND_FORMAT_VERSION);
            encode_command(writer, self);
        })
    }

    /// [`KvCommand::encode`] of a command whose encoded length is known
    /// (`len`: from [`KvCommand::encoded_len`], or
    /// [`KvCommand::exec_encoded_len`] for a batch), in one pass: the
    /// client path counts each command once, when it checks its size, and
    /// not again to encode it. In release builds `len` only sizes the
    /// buffer (a wrong one costs a reallocation, never a wrong encoding);
    /// debug builds assert it.
    pub(crate) fn encode_with_len(&self, len: usize) -> Bytes {
        let mut writer = Writer::with_capacity(len);
        writer.u8(COMMAND_FORMAT_VERSION);
        encode_command(&mut writer, self);
        debug_assert_eq!(writer.written(), len, "encoded length given wrong");
        writer.finish()
    }

    /// What [`KvCommand::AsUser`] of this command, `user` and `stamp`
    /// encodes to, without building it (no copy of the command); `len`,
    /// when known, is this command's own encoded length as
    /// [`KvCommand::encode_with_len`] takes it.
    pub(crate) fn encode_as_user(&self, user: &[u8], stamp: u64, len: Option<usize>) -> Bytes {
        let len = len.unwrap_or_else(|| self.encoded_len()) + as_user_overhead(user.len());
        let mut writer = Writer::with_capacity(len);
        writer.u8(COMMAND_FORMAT_VERSION);
        writer.u8(op::AS_USER);
        writer.bytes(user);
        writer.u64(stamp);
        encode_command(&mut writer, self);
        debug_assert_eq!(writer.written(), len, "encoded length given wrong");
        writer.finish()
    }

    /// The length of [`KvCommand::encode`]'s output, computed by the same
    /// code without copying anything.
    pub fn encoded_len(&self) -> usize {
        let mut writer = Writer::counter();
        writer.u8(COMMAND_FORMAT_VERSION);
        encode_command(&mut writer, self);
        writer.written()
    }

    /// The encoded length of a transaction (or pipelined batch) of commands
    /// whose own encoded lengths (each with its version byte) are given:
    /// what [`KvCommand::Exec`] of them encodes to.
    pub fn exec_encoded_len(command_lens: impl IntoIterator<Item = usize>) -> usize {
        // Version, opcode, count; each nested command without its version byte.
        1 + 1
            + 4
            + command_lens
                .into_iter()
                .map(|len| len.saturating_sub(1))
                .sum::<usize>()
    }

    /// Decodes what [`KvCommand::encode`] produced. Never panics; never
    /// reserves more elements than the input could hold.
    pub fn decode(bytes: &[u8]) -> Result<KvCommand, DecodeError> {
        KvCommand::decode_from(Reader::new(bytes))
    }

    /// [`KvCommand::decode`] of a command held as `Bytes`: the key and value
    /// of a plain string write (SET, SETNX, SETEX, GETSET) of up to
    /// 1024 bytes (the inline record limit) are zero-copy slices of `bytes`
    /// rather than copies: two allocations fewer per SET on every replica
    /// (the largest allocation site of a follower in a profile). Safe to
    /// slice because those fields are only read during the apply: the key
    /// is copied wherever it is kept, and a value that short goes into an
    /// inline record, a copy (see `Entry::stamped_string`); a longer one is
    /// copied here, as [`KvCommand::decode`] does, since a long value is
    /// kept as it is.
    pub fn decode_shared(bytes: &Bytes) -> Result<KvCommand, DecodeError> {
        KvCommand::decode_from(Reader::shared(bytes))
    }

    /// The key an encoded GET or HGET looks up, read in place (no decode,
    /// no allocation): what [`crate::Store`]'s read prefetch hint asks the
    /// CPU to fetch. `None` for any other command and for bytes that do
    /// not start like one of those two (a hint needs no error). Reads the
    /// layout `decode_command` reads for those two opcodes (the key
    /// first): keep them in step (`peek_tests` checks it against
    /// [`KvCommand::decode`]).
    pub(crate) fn peek_read_key(bytes: &[u8]) -> Option<&[u8]> {
        let mut reader = Reader::new(bytes);
        if reader.u8().ok()? != COMMAND_FORMAT_VERSION {
            return None;
        }
        let mut opcode = reader.u8().ok()?;
        if opcode == op::AS_USER {
            // The user and the stamp, then the command.
            reader.slice().ok()?;
            reader.u64().ok()?;
            opcode = reader.u8().ok()?;
        }
        match opcode {
            op::GET | op::H_GET => reader.slice().ok(),
            _ => None,
        }
    }

    fn decode_from(mut reader: Reader<'_>) -> Result<KvCommand, DecodeError> {
        let version = reader.u8().map_err(|_| DecodeError::Empty)?;
        if version != COMMAND_FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let command = decode_command(&mut reader, true)?;
        reader.finish()?;
        Ok(command)
    }
}

/// How many bytes [`KvCommand::AsUser`] adds to a command for a user name
/// of `user_len` bytes: its opcode, the name with its length, the stamp.
pub(crate) fn as_user_overhead(user_len: usize) -> usize {
    1 + 4 + user_len + 8
}

fn encode_keys(writer: &mut Writer, keys: &[Bytes]) {
    writer.len(keys.len());
    for key in keys {
        writer.bytes(key);
    }
}

fn encode_pairs(writer: &mut Writer, pairs: &[(Bytes, Bytes)]) {
    writer.len(pairs.len());
    for (first, second) in pairs {
        writer.bytes(first);
        writer.bytes(second);
    }
}

fn encode_unit(writer: &mut Writer, unit: TimeUnit) {
    writer.u8(match unit {
        TimeUnit::Seconds => 0,
        TimeUnit::Milliseconds => 1,
    });
}

fn encode_end(writer: &mut Writer, end: ListEnd) {
    writer.u8(match end {
        ListEnd::Left => 0,
        ListEnd::Right => 1,
    });
}

fn encode_command(writer: &mut Writer, command: &KvCommand) {
    match command {
        KvCommand::Get { key } => {
            writer.u8(op::GET);
            writer.bytes(key);
        }
        KvCommand::Set {
            key,
            value,
            condition,
            get,
            expiry,
        } => {
            writer.u8(op::SET);
            writer.bytes(key);
            writer.bytes(value);
            writer.u8(match condition {
                SetCondition::Always => 0,
                SetCondition::IfAbsent => 1,
                SetCondition::IfPresent => 2,
            });
            writer.bool(*get);
            match expiry {
                SetExpiry::Clear => writer.u8(0),
                SetExpiry::Keep => writer.u8(1),
                SetExpiry::After { ttl_ms } => {
                    writer.u8(2);
                    writer.i64(*ttl_ms);
                }
                SetExpiry::At { unix_ms } => {
                    writer.u8(3);
                    writer.i64(*unix_ms);
                }
            }
        }
        KvCommand::SetNx { key, value } => {
            writer.u8(op::SET_NX);
            writer.bytes(key);
            writer.bytes(value);
        }
        KvCommand::SetEx {
            key,
            value,
            unit,
            ttl_ms,
        } => {
            writer.u8(op::SET_EX);
            writer.bytes(key);
            writer.bytes(value);
            encode_unit(writer, *unit);
            writer.i64(*ttl_ms);
        }
        KvCommand::GetSet { key, value } => {
            writer.u8(op::GET_SET);
            writer.bytes(key);
            writer.bytes(value);
        }
        KvCommand::GetDel { key } => {
            writer.u8(op::GET_DEL);
            writer.bytes(key);
        }
        KvCommand::GetEx { key, expiry } => {
            writer.u8(op::GET_EX);
            writer.bytes(key);
            match expiry {
                GetExExpiry::Unchanged => writer.u8(0),
                GetExExpiry::Persist => writer.u8(1),
                GetExExpiry::After { ttl_ms } => {
                    writer.u8(2);
                    writer.i64(*ttl_ms);
                }
                GetExExpiry::At { unix_ms } => {
                    writer.u8(3);
                    writer.i64(*unix_ms);
                }
            }
        }
        KvCommand::MGet { keys } => {
            writer.u8(op::M_GET);
            encode_keys(writer, keys);
        }
        KvCommand::MSet { pairs } => {
            writer.u8(op::M_SET);
            encode_pairs(writer, pairs);
        }
        KvCommand::MSetNx { pairs } => {
            writer.u8(op::M_SET_NX);
            encode_pairs(writer, pairs);
        }
        KvCommand::Del { keys } => {
            writer.u8(op::DEL);
            encode_keys(writer, keys);
        }
        KvCommand::Exists { keys } => {
            writer.u8(op::EXISTS);
            encode_keys(writer, keys);
        }
        KvCommand::IncrBy { key, delta } => {
            writer.u8(op::INCR_BY);
            writer.bytes(key);
            writer.i64(*delta);
        }
        KvCommand::IncrByFloat { key, delta } => {
            writer.u8(op::INCR_BY_FLOAT);
            writer.bytes(key);
            writer.f64(*delta);
        }
        KvCommand::Append { key, value } => {
            writer.u8(op::APPEND);
            writer.bytes(key);
            writer.bytes(value);
        }
        KvCommand::StrLen { key } => {
            writer.u8(op::STR_LEN);
            writer.bytes(key);
        }
        KvCommand::GetRange { key, start, end } => {
            writer.u8(op::GET_RANGE);
            writer.bytes(key);
            writer.i64(*start);
            writer.i64(*end);
        }
        KvCommand::SetRange { key, offset, value } => {
            writer.u8(op::SET_RANGE);
            writer.bytes(key);
            writer.u64(*offset);
            writer.bytes(value);
        }
        KvCommand::Expire {
            key,
            form,
            when_ms,
            condition,
        } => {
            writer.u8(op::EXPIRE);
            writer.bytes(key);
            writer.u8(match form {
                ExpireForm::Expire => 0,
                ExpireForm::PExpire => 1,
                ExpireForm::ExpireAt => 2,
                ExpireForm::PExpireAt => 3,
            });
            writer.i64(*when_ms);
            writer.u8(u8::from(condition.if_no_expiry)
                | u8::from(condition.if_has_expiry) << 1
                | u8::from(condition.if_greater) << 2
                | u8::from(condition.if_less) << 3);
        }
        KvCommand::Ttl { key, unit } => {
            writer.u8(op::TTL);
            writer.bytes(key);
            encode_unit(writer, *unit);
        }
        KvCommand::Persist { key } => {
            writer.u8(op::PERSIST);
            writer.bytes(key);
        }
        KvCommand::Type { key } => {
            writer.u8(op::TYPE);
            writer.bytes(key);
        }
        KvCommand::Keys { pattern } => {
            writer.u8(op::KEYS);
            writer.bytes(pattern);
        }
        KvCommand::Scan {
            cursor,
            pattern,
            count,
            type_name,
        } => {
            writer.u8(op::SCAN);
            writer.u64(*cursor);
            writer.optional_bytes(pattern.as_ref());
            writer.u64(*count);
            writer.optional_bytes(type_name.as_ref());
        }
        KvCommand::DbSize => writer.u8(op::DB_SIZE),
        KvCommand::FlushAll => writer.u8(op::FLUSH_ALL),
        KvCommand::RandomKey { nonce } => {
            writer.u8(op::RANDOM_KEY_SEEDED);
            writer.u64(*nonce);
        }
        KvCommand::Rename {
            key,
            new_key,
            only_if_absent,
        } => {
            writer.u8(op::RENAME);
            writer.bytes(key);
            writer.bytes(new_key);
            writer.bool(*only_if_absent);
        }
        KvCommand::Copy {
            source,
            destination,
            replace,
        } => {
            writer.u8(op::COPY);
            writer.bytes(source);
            writer.bytes(destination);
            writer.bool(*replace);
        }
        KvCommand::Touch { keys } => {
            writer.u8(op::TOUCH);
            encode_keys(writer, keys);
        }
        KvCommand::ExpireTime { key, unit } => {
            writer.u8(op::EXPIRE_TIME);
            writer.bytes(key);
            encode_unit(writer, *unit);
        }
        KvCommand::Object { key, field } => {
            writer.u8(op::OBJECT);
            writer.bytes(key);
            writer.u8(match field {
                ObjectField::Encoding => 0,
                ObjectField::RefCount => 1,
                ObjectField::IdleTime => 2,
                ObjectField::Freq => 3,
            });
        }
        KvCommand::Sort(sort) => {
            writer.u8(op::SORT);
            encode_sort(writer, sort);
        }
        KvCommand::SetBit { key, offset, bit } => {
            writer.u8(op::SET_BIT);
            writer.bytes(key);
            writer.u64(*offset);
            writer.bool(*bit);
        }
        KvCommand::GetBit { key, offset } => {
            writer.u8(op::GET_BIT);
            writer.bytes(key);
            writer.u64(*offset);
        }
        KvCommand::BitCount { key, range } => {
            writer.u8(op::BIT_COUNT);
            writer.bytes(key);
            match range {
                None => writer.u8(0),
                Some((start, end, unit)) => {
                    writer.u8(1);
                    writer.i64(*start);
                    writer.i64(*end);
                    encode_bit_unit(writer, *unit);
                }
            }
        }
        KvCommand::BitPos {
            key,
            bit,
            start,
            end,
            unit,
        } => {
            writer.u8(op::BIT_POS);
            writer.bytes(key);
            writer.bool(*bit);
            encode_optional_i64(writer, *start);
            encode_optional_i64(writer, *end);
            encode_bit_unit(writer, *unit);
        }
        KvCommand::BitOp {
            operation,
            destination,
            keys,
        } => {
            writer.u8(op::BIT_OP);
            writer.u8(match operation {
                BitOperation::And => 0,
                BitOperation::Or => 1,
                BitOperation::Xor => 2,
                BitOperation::Not => 3,
            });
            writer.bytes(destination);
            encode_keys(writer, keys);
        }
        KvCommand::Lcs { key1, key2, output } => {
            writer.u8(op::LCS);
            writer.bytes(key1);
            writer.bytes(key2);
            match output {
                LcsOutput::String => writer.u8(0),
                LcsOutput::Len => writer.u8(1),
                LcsOutput::Ranges {
                    min_match_len,
                    with_match_len,
                } => {
                    writer.u8(2);
                    writer.u64(*min_match_len);
                    writer.bool(*with_match_len);
                }
            }
        }
        KvCommand::SetMaxMemory { bytes } => {
            writer.u8(op::SET_MAX_MEMORY);
            writer.u64(*bytes);
        }
        KvCommand::MemoryInfo => writer.u8(op::MEMORY_INFO),
        KvCommand::ExpireSweep => writer.u8(op::EXPIRE_SWEEP),
        KvCommand::HSet { key, pairs } => {
            writer.u8(op::H_SET);
            writer.bytes(key);
            encode_pairs(writer, pairs);
        }
        KvCommand::HGet { key, field } => {
            writer.u8(op::H_GET);
            writer.bytes(key);
            writer.bytes(field);
        }
        KvCommand::HDel { key, fields } => {
            writer.u8(op::H_DEL);
            writer.bytes(key);
            encode_keys(writer, fields);
        }
        KvCommand::HGetAll { key } => {
            writer.u8(op::H_GET_ALL);
            writer.bytes(key);
        }
        KvCommand::HLen { key } => {
            writer.u8(op::H_LEN);
            writer.bytes(key);
        }
        KvCommand::HExists { key, field } => {
            writer.u8(op::H_EXISTS);
            writer.bytes(key);
            writer.bytes(field);
        }
        KvCommand::HIncrBy { key, field, delta } => {
            writer.u8(op::H_INCR_BY);
            writer.bytes(key);
            writer.bytes(field);
            writer.i64(*delta);
        }
        KvCommand::Push { key, end, values } => {
            writer.u8(op::PUSH);
            writer.bytes(key);
            encode_end(writer, *end);
            encode_keys(writer, values);
        }
        KvCommand::Pop { key, end, count } => {
            writer.u8(op::POP);
            writer.bytes(key);
            encode_end(writer, *end);
            match count {
                None => writer.u8(0),
                Some(count) => {
                    writer.u8(1);
                    writer.u64(*count);
                }
            }
        }
        KvCommand::LRange { key, start, stop } => {
            writer.u8(op::L_RANGE);
            writer.bytes(key);
            writer.i64(*start);
            writer.i64(*stop);
        }
        KvCommand::LLen { key } => {
            writer.u8(op::L_LEN);
            writer.bytes(key);
        }
        list_or_hash @ (KvCommand::LIndex { .. }
        | KvCommand::LSet { .. }
        | KvCommand::LInsert { .. }
        | KvCommand::LRem { .. }
        | KvCommand::LTrim { .. }
        | KvCommand::LPos { .. }
        | KvCommand::PushX { .. }
        | KvCommand::LMove { .. }
        | KvCommand::LMPop { .. }
        | KvCommand::HMSet { .. }
        | KvCommand::HMGet { .. }
        | KvCommand::HSetNx { .. }
        | KvCommand::HIncrByFloat { .. }
        | KvCommand::HStrLen { .. }
        | KvCommand::HKeys { .. }
        | KvCommand::HVals { .. }
        | KvCommand::HRandField { .. }
        | KvCommand::HScan { .. }) => encode_list_or_hash(writer, list_or_hash),
        set @ (KvCommand::SAdd { .. }
        | KvCommand::SRem { .. }
        | KvCommand::SMembers { .. }
        | KvCommand::SIsMember { .. }
        | KvCommand::SMIsMember { .. }
        | KvCommand::SCard { .. }
        | KvCommand::SPop { .. }
        | KvCommand::SRandMember { .. }
        | KvCommand::SMove { .. }
        | KvCommand::SetCombine { .. }
        | KvCommand::SInterCard { .. }
        | KvCommand::SScan { .. }) => sets::encode(writer, set),
        dump @ (KvCommand::Dump { .. } | KvCommand::Restore(_) | KvCommand::MemoryUsage { .. }) => {
            dump::encode(writer, dump)
        }
        KvCommand::AsUser(run) => {
            writer.u8(op::AS_USER);
            writer.bytes(&run.user);
            writer.u64(run.stamp);
            encode_command(writer, &run.command);
        }
        KvCommand::Exec(commands) => {
            writer.u8(op::EXEC);
            writer.len(commands.len());
            for command in commands {
                encode_command(writer, command);
            }
        }
        KvCommand::Watch { keys } => {
            writer.u8(op::WATCH);
            encode_keys(writer, keys);
        }
        KvCommand::WatchCheck { watched } => {
            writer.u8(op::WATCH_CHECK);
            writer.len(watched.len());
            for watched in watched {
                writer.bytes(&watched.key);
                writer.bool(watched.live);
                writer.u64(watched.stamp.instance);
                writer.u64(watched.stamp.sequence);
            }
        }
        KvCommand::Eval(eval) => {
            if eval.instructions_max != crate::scripting::LEGACY_INSTRUCTIONS_MAX {
                writer.u8(op::EVAL_BUDGET);
                writer.u64(eval.instructions_max);
            }
            match (&eval.user, &eval.function) {
                (None, None) => writer.u8(op::EVAL),
                (None, Some(function)) => {
                    writer.u8(op::FCALL);
                    writer.bytes(function);
                }
                (Some(user), None) => {
                    writer.u8(op::EVAL_AS_USER);
                    writer.bytes(user);
                }
                (Some(user), Some(function)) => {
                    writer.u8(op::FCALL_AS_USER);
                    writer.bytes(user);
                    writer.bytes(function);
                }
            }
            writer.bytes(&eval.script);
            encode_keys(writer, &eval.keys);
            encode_keys(writer, &eval.args);
            writer.bool(eval.read_only);
        }
        KvCommand::Publish {
            channel,
            message,
            shard,
            origin,
            ticket,
        } => {
            writer.u8(op::PUBLISH);
            writer.bytes(channel);
            writer.bytes(message);
            writer.bool(*shard);
            writer.u64(*origin);
            writer.u64(*ticket);
        }
        KvCommand::ZSet(zset) => {
            writer.u8(op::Z_SET);
            crate::codec_zset::encode(writer, zset);
        }
        KvCommand::Blocking { kind, pop, blocked } => {
            writer.u8(op::BLOCKING);
            let index = BlockingKind::ALL.iter().position(|k| k == kind);
            let flag = if *blocked { BLOCKED_FLAG } else { 0 };
            writer.u8(index.unwrap_or(0) as u8 | flag);
            encode_command(writer, pop);
        }
        KvCommand::Acl(acl) => {
            writer.u8(op::ACL);
            match acl {
                AclCommand::SetUser { name, rules } => {
                    writer.u8(acl_op::SET_USER);
                    writer.bytes(name);
                    encode_keys(writer, rules);
                }
                AclCommand::DelUser { names } => {
                    writer.u8(acl_op::DEL_USER);
                    encode_keys(writer, names);
                }
                AclCommand::GetUser { name } => {
                    writer.u8(acl_op::GET_USER);
                    writer.bytes(name);
                }
                AclCommand::List => writer.u8(acl_op::LIST),
                AclCommand::Users => writer.u8(acl_op::USERS),
            }
        }
    }
}

fn decode_keys(reader: &mut Reader<'_>) -> Result<Vec<Bytes>, DecodeError> {
    let len = reader.len(4)?;
    let mut keys = Vec::with_capacity(len);
    for _ in 0..len {
        keys.push(reader.bytes()?);
    }
    Ok(keys)
}

fn decode_pairs(reader: &mut Reader<'_>) -> Result<Vec<(Bytes, Bytes)>, DecodeError> {
    let len = reader.len(8)?;
    let mut pairs = Vec::with_capacity(len);
    for _ in 0..len {
        let first = reader.bytes()?;
        let second = reader.bytes()?;
        pairs.push((first, second));
    }
    Ok(pairs)
}

fn decode_unit(reader: &mut Reader<'_>) -> Result<TimeUnit, DecodeError> {
    match reader.u8()? {
        0 => Ok(TimeUnit::Seconds),
        1 => Ok(TimeUnit::Milliseconds),
        tag => Err(DecodeError::UnknownTag {
            what: "time unit",
            tag,
        }),
    }
}

fn decode_end(reader: &mut Reader<'_>) -> Result<ListEnd, DecodeError> {
    match reader.u8()? {
        0 => Ok(ListEnd::Left),
        1 => Ok(ListEnd::Right),
        tag => Err(DecodeError::UnknownTag {
            what: "list end",
            tag,
        }),
    }
}

fn encode_bit_unit(writer: &mut Writer, unit: BitUnit) {
    writer.u8(match unit {
        BitUnit::Byte => 0,
        BitUnit::Bit => 1,
    });
}

fn encode_optional_i64(writer: &mut Writer, value: Option<i64>) {
    match value {
        None => writer.u8(0),
        Some(value) => {
            writer.u8(1);
            writer.i64(value);
        }
    }
}

fn encode_sort(writer: &mut Writer, sort: &SortCommand) {
    writer.bytes(&sort.key);
    writer.optional_bytes(sort.by.as_ref());
    match sort.limit {
        None => writer.u8(0),
        Some((offset, count)) => {
            writer.u8(1);
            writer.i64(offset);
            writer.i64(count);
        }
    }
    encode_keys(writer, &sort.gets);
    writer.bool(sort.descending);
    writer.bool(sort.alpha);
    writer.optional_bytes(sort.store.as_ref());
}

fn decode_bit_unit(reader: &mut Reader<'_>) -> Result<BitUnit, DecodeError> {
    match reader.u8()? {
        0 => Ok(BitUnit::Byte),
        1 => Ok(BitUnit::Bit),
        tag => Err(DecodeError::UnknownTag {
            what: "bit unit",
            tag,
        }),
    }
}

fn decode_optional_i64(reader: &mut Reader<'_>) -> Result<Option<i64>, DecodeError> {
    Ok(if reader.bool()? {
        Some(reader.i64()?)
    } else {
        None
    })
}

/// The commands of tags 150 to 199 (keys and strings of issue 16).
fn decode_keys_and_bits(reader: &mut Reader<'_>, opcode: u8) -> Result<KvCommand, DecodeError> {
    let command = match opcode {
        op::RANDOM_KEY_SEEDED => KvCommand::RandomKey {
            nonce: reader.u64()?,
        },
        op::RENAME => KvCommand::Rename {
            key: reader.bytes()?,
            new_key: reader.bytes()?,
            only_if_absent: reader.bool()?,
        },
        op::COPY => KvCommand::Copy {
            source: reader.bytes()?,
            destination: reader.bytes()?,
            replace: reader.bool()?,
        },
        op::TOUCH => KvCommand::Touch {
            keys: decode_keys(reader)?,
        },
        op::EXPIRE_TIME => KvCommand::ExpireTime {
            key: reader.bytes()?,
            unit: decode_unit(reader)?,
        },
        op::OBJECT => KvCommand::Object {
            key: reader.bytes()?,
            field: match reader.u8()? {
                0 => ObjectField::Encoding,
                1 => ObjectField::RefCount,
                2 => ObjectField::IdleTime,
                3 => ObjectField::Freq,
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "object field",
                        tag,
                    })
                }
            },
        },
        op::SORT => {
            let key = reader.bytes()?;
            let by = reader.optional_bytes()?;
            let limit = if reader.bool()? {
                Some((reader.i64()?, reader.i64()?))
            } else {
                None
            };
            KvCommand::Sort(Box::new(SortCommand {
                key,
                by,
                limit,
                gets: decode_keys(reader)?,
                descending: reader.bool()?,
                alpha: reader.bool()?,
                store: reader.optional_bytes()?,
            }))
        }
        op::SET_BIT => KvCommand::SetBit {
            key: reader.bytes()?,
            offset: reader.u64()?,
            bit: reader.bool()?,
        },
        op::GET_BIT => KvCommand::GetBit {
            key: reader.bytes()?,
            offset: reader.u64()?,
        },
        op::BIT_COUNT => {
            let key = reader.bytes()?;
            let range = if reader.bool()? {
                Some((reader.i64()?, reader.i64()?, decode_bit_unit(reader)?))
            } else {
                None
            };
            KvCommand::BitCount { key, range }
        }
        op::BIT_POS => KvCommand::BitPos {
            key: reader.bytes()?,
            bit: reader.bool()?,
            start: decode_optional_i64(reader)?,
            end: decode_optional_i64(reader)?,
            unit: decode_bit_unit(reader)?,
        },
        op::BIT_OP => {
            let operation = match reader.u8()? {
                0 => BitOperation::And,
                1 => BitOperation::Or,
                2 => BitOperation::Xor,
                3 => BitOperation::Not,
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "bit operation",
                        tag,
                    })
                }
            };
            KvCommand::BitOp {
                operation,
                destination: reader.bytes()?,
                keys: decode_keys(reader)?,
            }
        }
        op::LCS => {
            let key1 = reader.bytes()?;
            let key2 = reader.bytes()?;
            let output = match reader.u8()? {
                0 => LcsOutput::String,
                1 => LcsOutput::Len,
                2 => LcsOutput::Ranges {
                    min_match_len: reader.u64()?,
                    with_match_len: reader.bool()?,
                },
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "lcs output",
                        tag,
                    })
                }
            };
            KvCommand::Lcs { key1, key2, output }
        }
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "command",
                tag,
            })
        }
    };
    Ok(command)
}

/// A script's fields after its opcode (one of EVAL, FCALL, EVAL_AS_USER,
/// FCALL_AS_USER), with the budget its entry carries.
fn decode_eval(
    reader: &mut Reader<'_>,
    opcode: u8,
    instructions_max: u64,
) -> Result<crate::scripting::EvalCommand, DecodeError> {
    Ok(crate::scripting::EvalCommand {
        instructions_max,
        user: if opcode == op::EVAL_AS_USER || opcode == op::FCALL_AS_USER {
            Some(reader.bytes()?)
        } else {
            None
        },
        function: if opcode == op::FCALL || opcode == op::FCALL_AS_USER {
            Some(reader.bytes()?)
        } else {
            None
        },
        script: reader.bytes()?,
        keys: decode_keys(reader)?,
        args: decode_keys(reader)?,
        read_only: reader.bool()?,
    })
}

fn decode_command(reader: &mut Reader<'_>, top_level: bool) -> Result<KvCommand, DecodeError> {
    let opcode = reader.u8()?;
    let command = match opcode {
        op::GET => KvCommand::Get {
            key: reader.bytes()?,
        },
        op::SET => {
            let key = reader.short_bytes(INLINE_VALUE_BYTES_MAX)?;
            let value = reader.short_bytes(INLINE_VALUE_BYTES_MAX)?;
            let condition = match reader.u8()? {
                0 => SetCondition::Always,
                1 => SetCondition::IfAbsent,
                2 => SetCondition::IfPresent,
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "set condition",
                        tag,
                    })
                }
            };
            let get = reader.bool()?;
            let expiry = match reader.u8()? {
                0 => SetExpiry::Clear,
                1 => SetExpiry::Keep,
                2 => SetExpiry::After {
                    ttl_ms: reader.i64()?,
                },
                3 => SetExpiry::At {
                    unix_ms: reader.i64()?,
                },
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "set expiry",
                        tag,
                    })
                }
            };
            KvCommand::Set {
                key,
                value,
                condition,
                get,
                expiry,
            }
        }
        op::SET_NX => KvCommand::SetNx {
            key: reader.short_bytes(INLINE_VALUE_BYTES_MAX)?,
            value: reader.short_bytes(INLINE_VALUE_BYTES_MAX)?,
        },
        op::SET_EX => KvCommand::SetEx {
            key: reader.short_bytes(INLINE_VALUE_BYTES_MAX)?,
            value: reader.short_bytes(INLINE_VALUE_BYTES_MAX)?,
            unit: decode_unit(reader)?,
            ttl_ms: reader.i64()?,
        },
        op::GET_SET => KvCommand::GetSet {
            key: reader.short_bytes(INLINE_VALUE_BYTES_MAX)?,
            value: reader.short_bytes(INLINE_VALUE_BYTES_MAX)?,
        },
        op::GET_DEL => KvCommand::GetDel {
            key: reader.bytes()?,
        },
        op::GET_EX => {
            let key = reader.bytes()?;
            let expiry = match reader.u8()? {
                0 => GetExExpiry::Unchanged,
                1 => GetExExpiry::Persist,
                2 => GetExExpiry::After {
                    ttl_ms: reader.i64()?,
                },
                3 => GetExExpiry::At {
                    unix_ms: reader.i64()?,
                },
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "getex expiry",
                        tag,
                    })
                }
            };
            KvCommand::GetEx { key, expiry }
        }
        op::M_GET => KvCommand::MGet {
            keys: decode_keys(reader)?,
        },
        op::M_SET => KvCommand::MSet {
            pairs: decode_pairs(reader)?,
        },
        op::M_SET_NX => KvCommand::MSetNx {
            pairs: decode_pairs(reader)?,
        },
        op::DEL => KvCommand::Del {
            keys: decode_keys(reader)?,
        },
        op::EXISTS => KvCommand::Exists {
            keys: decode_keys(reader)?,
        },
        op::INCR_BY => KvCommand::IncrBy {
            key: reader.bytes()?,
            delta: reader.i64()?,
        },
        op::INCR_BY_FLOAT => KvCommand::IncrByFloat {
            key: reader.bytes()?,
            delta: reader.f64()?,
        },
        op::APPEND => KvCommand::Append {
            key: reader.bytes()?,
            value: reader.bytes()?,
        },
        op::STR_LEN => KvCommand::StrLen {
            key: reader.bytes()?,
        },
        op::GET_RANGE => KvCommand::GetRange {
            key: reader.bytes()?,
            start: reader.i64()?,
            end: reader.i64()?,
        },
        op::SET_RANGE => KvCommand::SetRange {
            key: reader.bytes()?,
            offset: reader.u64()?,
            value: reader.bytes()?,
        },
        op::EXPIRE => {
            let key = reader.bytes()?;
            let form = match reader.u8()? {
                0 => ExpireForm::Expire,
                1 => ExpireForm::PExpire,
                2 => ExpireForm::ExpireAt,
                3 => ExpireForm::PExpireAt,
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "expire form",
                        tag,
                    })
                }
            };
            let when_ms = reader.i64()?;
            let bits = reader.u8()?;
            if bits > 0b1111 {
                return Err(DecodeError::Invalid("unknown expire condition bits"));
            }
            let condition = ExpireCondition {
                if_no_expiry: bits & 1 != 0,
                if_has_expiry: bits & 2 != 0,
                if_greater: bits & 4 != 0,
                if_less: bits & 8 != 0,
            };
            KvCommand::Expire {
                key,
                form,
                when_ms,
                condition,
            }
        }
        op::TTL => KvCommand::Ttl {
            key: reader.bytes()?,
            unit: decode_unit(reader)?,
        },
        op::PERSIST => KvCommand::Persist {
            key: reader.bytes()?,
        },
        op::TYPE => KvCommand::Type {
            key: reader.bytes()?,
        },
        op::KEYS => KvCommand::Keys {
            pattern: reader.bytes()?,
        },
        op::SCAN => KvCommand::Scan {
            cursor: reader.u64()?,
            pattern: reader.optional_bytes()?,
            count: reader.u64()?,
            type_name: reader.optional_bytes()?,
        },
        op::DB_SIZE => KvCommand::DbSize,
        op::FLUSH_ALL => KvCommand::FlushAll,
        // The pick of an entry written before the nonce existed is of no
        // consequence (a read changes nothing): it is read as nonce 0.
        op::RANDOM_KEY => KvCommand::RandomKey { nonce: 0 },
        op::RANDOM_KEY_SEEDED..=op::LCS => decode_keys_and_bits(reader, opcode)?,
        op::SET_MAX_MEMORY => KvCommand::SetMaxMemory {
            bytes: reader.u64()?,
        },
        op::MEMORY_INFO => KvCommand::MemoryInfo,
        op::EXPIRE_SWEEP => KvCommand::ExpireSweep,
        op::H_SET => KvCommand::HSet {
            key: reader.bytes()?,
            pairs: decode_pairs(reader)?,
        },
        op::H_GET => KvCommand::HGet {
            key: reader.bytes()?,
            field: reader.bytes()?,
        },
        op::H_DEL => KvCommand::HDel {
            key: reader.bytes()?,
            fields: decode_keys(reader)?,
        },
        op::H_GET_ALL => KvCommand::HGetAll {
            key: reader.bytes()?,
        },
        op::H_LEN => KvCommand::HLen {
            key: reader.bytes()?,
        },
        op::H_EXISTS => KvCommand::HExists {
            key: reader.bytes()?,
            field: reader.bytes()?,
        },
        op::H_INCR_BY => KvCommand::HIncrBy {
            key: reader.bytes()?,
            field: reader.bytes()?,
            delta: reader.i64()?,
        },
        op::PUSH => KvCommand::Push {
            key: reader.bytes()?,
            end: decode_end(reader)?,
            values: decode_keys(reader)?,
        },
        op::POP => KvCommand::Pop {
            key: reader.bytes()?,
            end: decode_end(reader)?,
            count: if reader.bool()? {
                Some(reader.u64()?)
            } else {
                None
            },
        },
        op::L_RANGE => KvCommand::LRange {
            key: reader.bytes()?,
            start: reader.i64()?,
            stop: reader.i64()?,
        },
        op::L_LEN => KvCommand::LLen {
            key: reader.bytes()?,
        },
        op::L_INDEX..=op::H_SCAN => decode_list_or_hash(reader, opcode)?,
        sets::S_ADD..=sets::S_SCAN => sets::decode(reader, opcode)?,
        dump::DUMP..=dump::MEMORY_USAGE => dump::decode(reader, opcode)?,
        op::AS_USER => {
            if !top_level {
                return Err(DecodeError::Invalid("a user inside a transaction"));
            }
            let user = reader.bytes()?;
            let stamp = reader.u64()?;
            // Checked before decoding what it wraps, as for a blocking pop:
            // a chain of wrappers must not recurse (a long one in a log
            // value would overflow the stack of every replica decoding it,
            // at every replay; the review of stop 63 built one).
            if reader.peek_u8()? == op::AS_USER {
                return Err(DecodeError::Invalid("a user inside a user"));
            }
            // Top level again: the command may be a transaction or batch.
            let command = decode_command(reader, true)?;
            KvCommand::AsUser(Box::new(crate::command::AsUser {
                user,
                stamp,
                command,
            }))
        }
        op::EXEC => {
            if !top_level {
                return Err(DecodeError::Invalid("nested transaction"));
            }
            // The smallest command is one opcode byte.
            let len = reader.len(1)?;
            let mut commands = Vec::with_capacity(len);
            for index in 0..len {
                let command = decode_command(reader, false)?;
                // A WATCH check guards the transaction it opens, nothing else.
                if index > 0 && matches!(command, KvCommand::WatchCheck { .. }) {
                    return Err(DecodeError::Invalid("WATCH check inside a transaction"));
                }
                commands.push(command);
            }
            KvCommand::Exec(commands)
        }
        op::WATCH => KvCommand::Watch {
            keys: decode_keys(reader)?,
        },
        op::WATCH_CHECK => {
            if top_level {
                return Err(DecodeError::Invalid("WATCH check outside a transaction"));
            }
            // Key length, live flag, two stamp numbers.
            let len = reader.len(4 + 1 + 8 + 8)?;
            let mut watched = Vec::with_capacity(len);
            for _ in 0..len {
                let key = reader.bytes()?;
                let live = reader.bool()?;
                let instance = reader.u64()?;
                let sequence = reader.u64()?;
                watched.push(WatchedKey {
                    key,
                    live,
                    stamp: Stamp { instance, sequence },
                });
            }
            KvCommand::WatchCheck { watched }
        }
        op::Z_SET => KvCommand::ZSet(Box::new(crate::codec_zset::decode(reader)?)),
        op::EVAL_BUDGET => {
            // The budget, then one of the four script opcodes, read here
            // (not by a recursive decode: a chain of budget tags must not
            // nest, nor one apply to anything but a script).
            let instructions_max = reader.u64()?;
            if instructions_max > crate::scripting::INSTRUCTIONS_MAX_LOGGED {
                return Err(DecodeError::Invalid(
                    "a script budget past the largest allowed",
                ));
            }
            let opcode = reader.u8()?;
            if !matches!(
                opcode,
                op::EVAL | op::FCALL | op::EVAL_AS_USER | op::FCALL_AS_USER
            ) {
                return Err(DecodeError::Invalid("a script budget without its script"));
            }
            KvCommand::Eval(Box::new(decode_eval(reader, opcode, instructions_max)?))
        }
        op::EVAL | op::FCALL | op::EVAL_AS_USER | op::FCALL_AS_USER => KvCommand::Eval(Box::new(
            decode_eval(reader, opcode, crate::scripting::LEGACY_INSTRUCTIONS_MAX)?,
        )),
        op::PUBLISH => KvCommand::Publish {
            channel: reader.bytes()?,
            message: reader.bytes()?,
            shard: reader.bool()?,
            origin: reader.u64()?,
            ticket: reader.u64()?,
        },
        op::BLOCKING => {
            let tag = reader.u8()?;
            let blocked = tag & BLOCKED_FLAG != 0;
            let kind = *BlockingKind::ALL
                .get(usize::from(tag & !BLOCKED_FLAG))
                .ok_or(DecodeError::UnknownTag {
                    what: "blocking pop",
                    tag,
                })?;
            // A blocking pop wraps one pop, never another blocking pop: a
            // chain of them must not recurse (a long one would overflow the
            // stack of every replica decoding it).
            if reader.peek_u8()? == op::BLOCKING {
                return Err(DecodeError::Invalid("blocking pop wraps another command"));
            }
            let pop = decode_command(reader, false)?;
            if !kind.wraps(&pop) {
                return Err(DecodeError::Invalid("blocking pop wraps another command"));
            }
            KvCommand::Blocking {
                kind,
                pop: Box::new(pop),
                blocked,
            }
        }
        op::ACL => KvCommand::Acl(match reader.u8()? {
            acl_op::SET_USER => AclCommand::SetUser {
                name: reader.bytes()?,
                rules: decode_keys(reader)?,
            },
            acl_op::DEL_USER => AclCommand::DelUser {
                names: decode_keys(reader)?,
            },
            acl_op::GET_USER => AclCommand::GetUser {
                name: reader.bytes()?,
            },
            acl_op::LIST => AclCommand::List,
            acl_op::USERS => AclCommand::Users,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "acl command",
                    tag,
                })
            }
        }),
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "command",
                tag,
            })
        }
    };
    Ok(command)
}

/// The issue-16 list and hash commands (tags from 200), kept apart from the
/// first commands' arms.
fn encode_list_or_hash(writer: &mut Writer, command: &KvCommand) {
    match command {
        KvCommand::LIndex { key, index } => {
            writer.u8(op::L_INDEX);
            writer.bytes(key);
            writer.i64(*index);
        }
        KvCommand::LSet { key, index, value } => {
            writer.u8(op::L_SET);
            writer.bytes(key);
            writer.i64(*index);
            writer.bytes(value);
        }
        KvCommand::LInsert {
            key,
            before,
            pivot,
            value,
        } => {
            writer.u8(op::L_INSERT);
            writer.bytes(key);
            writer.bool(*before);
            writer.bytes(pivot);
            writer.bytes(value);
        }
        KvCommand::LRem { key, count, value } => {
            writer.u8(op::L_REM);
            writer.bytes(key);
            writer.i64(*count);
            writer.bytes(value);
        }
        KvCommand::LTrim { key, start, stop } => {
            writer.u8(op::L_TRIM);
            writer.bytes(key);
            writer.i64(*start);
            writer.i64(*stop);
        }
        KvCommand::LPos {
            key,
            value,
            rank,
            count,
            maxlen,
        } => {
            writer.u8(op::L_POS);
            writer.bytes(key);
            writer.bytes(value);
            writer.i64(*rank);
            encode_optional_u64(writer, *count);
            writer.u64(*maxlen);
        }
        KvCommand::PushX { key, end, values } => {
            writer.u8(op::PUSH_X);
            writer.bytes(key);
            encode_end(writer, *end);
            encode_keys(writer, values);
        }
        KvCommand::LMove {
            source,
            destination,
            from,
            to,
        } => {
            writer.u8(op::L_MOVE);
            writer.bytes(source);
            writer.bytes(destination);
            encode_end(writer, *from);
            encode_end(writer, *to);
        }
        KvCommand::LMPop { keys, end, count } => {
            writer.u8(op::L_M_POP);
            encode_keys(writer, keys);
            encode_end(writer, *end);
            writer.u64(*count);
        }
        KvCommand::HMSet { key, pairs } => {
            writer.u8(op::H_M_SET);
            writer.bytes(key);
            encode_pairs(writer, pairs);
        }
        KvCommand::HMGet { key, fields } => {
            writer.u8(op::H_M_GET);
            writer.bytes(key);
            encode_keys(writer, fields);
        }
        KvCommand::HSetNx { key, field, value } => {
            writer.u8(op::H_SET_NX);
            writer.bytes(key);
            writer.bytes(field);
            writer.bytes(value);
        }
        KvCommand::HIncrByFloat {
            key,
            field,
            increment,
        } => {
            writer.u8(op::H_INCR_BY_FLOAT);
            writer.bytes(key);
            writer.bytes(field);
            writer.bytes(increment);
        }
        KvCommand::HStrLen { key, field } => {
            writer.u8(op::H_STR_LEN);
            writer.bytes(key);
            writer.bytes(field);
        }
        KvCommand::HKeys { key } => {
            writer.u8(op::H_KEYS);
            writer.bytes(key);
        }
        KvCommand::HVals { key } => {
            writer.u8(op::H_VALS);
            writer.bytes(key);
        }
        KvCommand::HRandField {
            key,
            count,
            with_values,
        } => {
            writer.u8(op::H_RAND_FIELD);
            writer.bytes(key);
            match count {
                None => writer.u8(0),
                Some(count) => {
                    writer.u8(1);
                    writer.i64(*count);
                }
            }
            writer.bool(*with_values);
        }
        KvCommand::HScan {
            key,
            cursor,
            pattern,
            count,
        } => {
            writer.u8(op::H_SCAN);
            writer.bytes(key);
            writer.u64(*cursor);
            writer.optional_bytes(pattern.as_ref());
            writer.u64(*count);
        }
        other => {
            debug_assert!(false, "{} is not an issue-16 command", other.name());
        }
    }
}

fn encode_optional_u64(writer: &mut Writer, value: Option<u64>) {
    match value {
        None => writer.u8(0),
        Some(value) => {
            writer.u8(1);
            writer.u64(value);
        }
    }
}

fn decode_optional_u64(reader: &mut Reader<'_>) -> Result<Option<u64>, DecodeError> {
    Ok(if reader.bool()? {
        Some(reader.u64()?)
    } else {
        None
    })
}

fn decode_list_or_hash(reader: &mut Reader<'_>, opcode: u8) -> Result<KvCommand, DecodeError> {
    let command = match opcode {
        op::L_INDEX => KvCommand::LIndex {
            key: reader.bytes()?,
            index: reader.i64()?,
        },
        op::L_SET => KvCommand::LSet {
            key: reader.bytes()?,
            index: reader.i64()?,
            value: reader.bytes()?,
        },
        op::L_INSERT => KvCommand::LInsert {
            key: reader.bytes()?,
            before: reader.bool()?,
            pivot: reader.bytes()?,
            value: reader.bytes()?,
        },
        op::L_REM => KvCommand::LRem {
            key: reader.bytes()?,
            count: reader.i64()?,
            value: reader.bytes()?,
        },
        op::L_TRIM => KvCommand::LTrim {
            key: reader.bytes()?,
            start: reader.i64()?,
            stop: reader.i64()?,
        },
        op::L_POS => {
            let key = reader.bytes()?;
            let value = reader.bytes()?;
            let rank = reader.i64()?;
            if rank == 0 || rank == i64::MIN {
                return Err(DecodeError::Invalid("LPOS rank 0 or i64::MIN"));
            }
            KvCommand::LPos {
                key,
                value,
                rank,
                count: decode_optional_u64(reader)?,
                maxlen: reader.u64()?,
            }
        }
        op::PUSH_X => KvCommand::PushX {
            key: reader.bytes()?,
            end: decode_end(reader)?,
            values: decode_keys(reader)?,
        },
        op::L_MOVE => KvCommand::LMove {
            source: reader.bytes()?,
            destination: reader.bytes()?,
            from: decode_end(reader)?,
            to: decode_end(reader)?,
        },
        op::L_M_POP => KvCommand::LMPop {
            keys: decode_keys(reader)?,
            end: decode_end(reader)?,
            count: reader.u64()?,
        },
        op::H_M_SET => KvCommand::HMSet {
            key: reader.bytes()?,
            pairs: decode_pairs(reader)?,
        },
        op::H_M_GET => KvCommand::HMGet {
            key: reader.bytes()?,
            fields: decode_keys(reader)?,
        },
        op::H_SET_NX => KvCommand::HSetNx {
            key: reader.bytes()?,
            field: reader.bytes()?,
            value: reader.bytes()?,
        },
        op::H_INCR_BY_FLOAT => KvCommand::HIncrByFloat {
            key: reader.bytes()?,
            field: reader.bytes()?,
            increment: reader.bytes()?,
        },
        op::H_STR_LEN => KvCommand::HStrLen {
            key: reader.bytes()?,
            field: reader.bytes()?,
        },
        op::H_KEYS => KvCommand::HKeys {
            key: reader.bytes()?,
        },
        op::H_VALS => KvCommand::HVals {
            key: reader.bytes()?,
        },
        op::H_RAND_FIELD => KvCommand::HRandField {
            key: reader.bytes()?,
            count: if reader.bool()? {
                Some(reader.i64()?)
            } else {
                None
            },
            with_values: reader.bool()?,
        },
        op::H_SCAN => KvCommand::HScan {
            key: reader.bytes()?,
            cursor: reader.u64()?,
            pattern: reader.optional_bytes()?,
            count: reader.u64()?,
        },
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "command",
                tag,
            })
        }
    };
    Ok(command)
}

#[cfg(test)]
mod peek_tests {
    use super::*;

    #[test]
    fn peek_read_key_finds_the_key_of_a_get_or_hget_and_nothing_else() {
        let get = KvCommand::Get {
            key: Bytes::from_static(b"k:1"),
        }
        .encode();
        assert_eq!(KvCommand::peek_read_key(&get), Some(&b"k:1"[..]));
        let hget = KvCommand::HGet {
            key: Bytes::from_static(b"h"),
            field: Bytes::from_static(b"f"),
        }
        .encode();
        assert_eq!(KvCommand::peek_read_key(&hget), Some(&b"h"[..]));
        let other = KvCommand::Exists {
            keys: vec![Bytes::from_static(b"k:1")],
        }
        .encode();
        assert_eq!(KvCommand::peek_read_key(&other), None);
    }

    /// Bytes from a client or a corrupt log: a hint gives up, never panics.
    #[test]
    fn peek_read_key_gives_up_on_bad_bytes() {
        let get = KvCommand::Get {
            key: Bytes::from_static(b"key"),
        }
        .encode();
        for cut in 0..get.len() {
            assert_eq!(KvCommand::peek_read_key(&get[..cut]), None, "cut at {cut}");
        }
        let mut other_version = get.to_vec();
        other_version[0] = COMMAND_FORMAT_VERSION.wrapping_add(1);
        assert_eq!(KvCommand::peek_read_key(&other_version), None);
        let mut huge_length = get.to_vec();
        huge_length.truncate(2);
        huge_length.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(KvCommand::peek_read_key(&huge_length), None);
    }
}

#[cfg(test)]
mod peek_props {
    use super::*;
    use proptest::prelude::*;

    /// What `peek_read_key` should say of bytes `decode` accepts.
    fn expected(command: &KvCommand) -> Option<&[u8]> {
        match command {
            KvCommand::Get { key } | KvCommand::HGet { key, .. } => Some(key),
            _ => None,
        }
    }

    proptest! {
        /// Any bytes: no panic; and wherever `decode` accepts them, the peek
        /// agrees with it (the key of a GET or HGET, nothing otherwise).
        #[test]
        fn peek_agrees_with_decode(
            opcode in prop_oneof![Just(op::GET), Just(op::H_GET), any::<u8>()],
            rest in proptest::collection::vec(any::<u8>(), 0..24),
            key in proptest::collection::vec(any::<u8>(), 0..8),
            field in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            // One field (a GET's layout), two (an HGET's), or anything.
            let mut one = vec![COMMAND_FORMAT_VERSION, opcode];
            one.extend_from_slice(&(key.len() as u32).to_le_bytes());
            one.extend_from_slice(&key);
            let mut two = one.clone();
            two.extend_from_slice(&(field.len() as u32).to_le_bytes());
            two.extend_from_slice(&field);
            let mut raw = vec![COMMAND_FORMAT_VERSION, opcode];
            raw.extend_from_slice(&rest);
            for bytes in [one, two, raw] {
                let peeked = KvCommand::peek_read_key(&bytes);
                if let Ok(command) = KvCommand::decode(&bytes) {
                    prop_assert_eq!(peeked, expected(&command));
                }
            }
        }
    }
}
