//! The log encoding of `DUMP`, `RESTORE` and `MEMORY USAGE` (issue 16):
//! tags 190 to 192,
//! laid out like the rest of [`super`] (an opcode byte, then the fields in
//! declaration order). Never renumber a tag, only add.
//!
//! `RESTORE`'s payload travels as the client sent it (a `u32` length and the
//! bytes); the proposer checked it, and every replica decodes it again,
//! defensively, when it applies the command (`crate::dump::decode`).

use crate::command::{KvCommand, RestoreCommand, RestoreExpiry};
use crate::wire::{DecodeError, Reader, Writer};

pub(super) const DUMP: u8 = 190;
const RESTORE: u8 = 191;
pub(super) const MEMORY_USAGE: u8 = 192;

/// Expiry kinds after `RESTORE`'s key.
const EXPIRY_NONE: u8 = 0;
const EXPIRY_AFTER: u8 = 1;
const EXPIRY_AT: u8 = 2;

pub(super) fn encode(writer: &mut Writer, command: &KvCommand) {
    match command {
        KvCommand::Dump { key } => {
            writer.u8(DUMP);
            writer.bytes(key);
        }
        KvCommand::MemoryUsage { key } => {
            writer.u8(MEMORY_USAGE);
            writer.bytes(key);
        }
        KvCommand::Restore(restore) => {
            writer.u8(RESTORE);
            writer.bytes(&restore.key);
            match restore.expiry {
                None => writer.u8(EXPIRY_NONE),
                Some(RestoreExpiry::After { ttl_ms }) => {
                    writer.u8(EXPIRY_AFTER);
                    writer.u64(ttl_ms);
                }
                Some(RestoreExpiry::At { unix_ms }) => {
                    writer.u8(EXPIRY_AT);
                    writer.u64(unix_ms);
                }
            }
            writer.bool(restore.replace);
            writer.bytes(&restore.payload);
        }
        other => debug_assert!(false, "{} is not encoded here", other.name()),
    }
}

pub(super) fn decode(reader: &mut Reader<'_>, opcode: u8) -> Result<KvCommand, DecodeError> {
    match opcode {
        DUMP => Ok(KvCommand::Dump {
            key: reader.bytes()?,
        }),
        MEMORY_USAGE => Ok(KvCommand::MemoryUsage {
            key: reader.bytes()?,
        }),
        RESTORE => {
            let key = reader.bytes()?;
            let expiry = match reader.u8()? {
                EXPIRY_NONE => None,
                EXPIRY_AFTER => Some(RestoreExpiry::After {
                    ttl_ms: reader.u64()?,
                }),
                EXPIRY_AT => Some(RestoreExpiry::At {
                    unix_ms: reader.u64()?,
                }),
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "restore expiry",
                        tag,
                    })
                }
            };
            let replace = reader.bool()?;
            let payload = reader.bytes()?;
            Ok(KvCommand::Restore(Box::new(RestoreCommand {
                key,
                expiry,
                replace,
                payload,
            })))
        }
        tag => Err(DecodeError::UnknownTag {
            what: "command",
            tag,
        }),
    }
}
