//! The log encoding of the set commands (issue 16): tags 220 to 239, laid
//! out like the rest of [`super`] (an opcode byte, then the fields in
//! declaration order). Never renumber a tag, only add.

use super::{decode_keys, decode_optional_u64, encode_keys, encode_optional_u64};
use crate::command::{KvCommand, SetOperation};
use crate::wire::{DecodeError, Reader, Writer};

pub(super) const S_ADD: u8 = 220;
const S_REM: u8 = 221;
const S_MEMBERS: u8 = 222;
const S_IS_MEMBER: u8 = 223;
const S_M_IS_MEMBER: u8 = 224;
const S_CARD: u8 = 225;
const S_POP: u8 = 226;
const S_RAND_MEMBER: u8 = 227;
const S_MOVE: u8 = 228;
const S_COMBINE: u8 = 229;
const S_INTER_CARD: u8 = 230;
pub(super) const S_SCAN: u8 = 231;

pub(super) fn encode(writer: &mut Writer, command: &KvCommand) {
    match command {
        KvCommand::SAdd { key, members } => {
            writer.u8(S_ADD);
            writer.bytes(key);
            encode_keys(writer, members);
        }
        KvCommand::SRem { key, members } => {
            writer.u8(S_REM);
            writer.bytes(key);
            encode_keys(writer, members);
        }
        KvCommand::SMembers { key } => {
            writer.u8(S_MEMBERS);
            writer.bytes(key);
        }
        KvCommand::SIsMember { key, member } => {
            writer.u8(S_IS_MEMBER);
            writer.bytes(key);
            writer.bytes(member);
        }
        KvCommand::SMIsMember { key, members } => {
            writer.u8(S_M_IS_MEMBER);
            writer.bytes(key);
            encode_keys(writer, members);
        }
        KvCommand::SCard { key } => {
            writer.u8(S_CARD);
            writer.bytes(key);
        }
        KvCommand::SPop { key, count } => {
            writer.u8(S_POP);
            writer.bytes(key);
            encode_optional_u64(writer, *count);
        }
        KvCommand::SRandMember { key, count } => {
            writer.u8(S_RAND_MEMBER);
            writer.bytes(key);
            match count {
                None => writer.u8(0),
                Some(count) => {
                    writer.u8(1);
                    writer.i64(*count);
                }
            }
        }
        KvCommand::SMove {
            source,
            destination,
            member,
        } => {
            writer.u8(S_MOVE);
            writer.bytes(source);
            writer.bytes(destination);
            writer.bytes(member);
        }
        KvCommand::SetCombine {
            operation,
            keys,
            store,
        } => {
            writer.u8(S_COMBINE);
            writer.u8(match operation {
                SetOperation::Inter => 0,
                SetOperation::Union => 1,
                SetOperation::Diff => 2,
            });
            encode_keys(writer, keys);
            writer.optional_bytes(store.as_ref());
        }
        KvCommand::SInterCard { keys, limit } => {
            writer.u8(S_INTER_CARD);
            encode_keys(writer, keys);
            writer.u64(*limit);
        }
        KvCommand::SScan {
            key,
            cursor,
            pattern,
            count,
        } => {
            writer.u8(S_SCAN);
            writer.bytes(key);
            writer.u64(*cursor);
            writer.optional_bytes(pattern.as_ref());
            writer.u64(*count);
        }
        other => {
            debug_assert!(false, "{} is not a set command", other.name());
        }
    }
}

pub(super) fn decode(reader: &mut Reader<'_>, opcode: u8) -> Result<KvCommand, DecodeError> {
    let command = match opcode {
        S_ADD => KvCommand::SAdd {
            key: reader.bytes()?,
            members: decode_keys(reader)?,
        },
        S_REM => KvCommand::SRem {
            key: reader.bytes()?,
            members: decode_keys(reader)?,
        },
        S_MEMBERS => KvCommand::SMembers {
            key: reader.bytes()?,
        },
        S_IS_MEMBER => KvCommand::SIsMember {
            key: reader.bytes()?,
            member: reader.bytes()?,
        },
        S_M_IS_MEMBER => KvCommand::SMIsMember {
            key: reader.bytes()?,
            members: decode_keys(reader)?,
        },
        S_CARD => KvCommand::SCard {
            key: reader.bytes()?,
        },
        S_POP => KvCommand::SPop {
            key: reader.bytes()?,
            count: decode_optional_u64(reader)?,
        },
        S_RAND_MEMBER => {
            let key = reader.bytes()?;
            let count = if reader.bool()? {
                let count = reader.i64()?;
                if count == i64::MIN {
                    return Err(DecodeError::Invalid("SRANDMEMBER count i64::MIN"));
                }
                Some(count)
            } else {
                None
            };
            KvCommand::SRandMember { key, count }
        }
        S_MOVE => KvCommand::SMove {
            source: reader.bytes()?,
            destination: reader.bytes()?,
            member: reader.bytes()?,
        },
        S_COMBINE => {
            let operation = match reader.u8()? {
                0 => SetOperation::Inter,
                1 => SetOperation::Union,
                2 => SetOperation::Diff,
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "set operation",
                        tag,
                    })
                }
            };
            KvCommand::SetCombine {
                operation,
                keys: decode_keys(reader)?,
                store: reader.optional_bytes()?,
            }
        }
        S_INTER_CARD => KvCommand::SInterCard {
            keys: decode_keys(reader)?,
            limit: reader.u64()?,
        },
        S_SCAN => KvCommand::SScan {
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
