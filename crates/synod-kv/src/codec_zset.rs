//! The log encoding of the sorted-set commands: after the family's opcode
//! (`op::Z_SET`, 240, in `crate::command_codec`), one sub-tag byte naming
//! the command, then its fields in declaration order (integers
//! little-endian, byte strings and lists with a `u32` length, scores as
//! IEEE-754 bits). Sub-tags are part of the format: never renumber one,
//! only add. Decoding rejects NaN scores and bounds, unknown tags and
//! inconsistent lengths, so a replica never applies a command the parser
//! could not have built.

use bytes::Bytes;

use crate::command_zset::{
    Aggregate, LexBound, LexRange, ScoreRange, SetOperation, ZAddFlags, ZRangeSpec, ZSetCommand,
};
use crate::wire::{DecodeError, Reader, Writer};

mod sub {
    pub const ADD: u8 = 0;
    pub const INCR_BY: u8 = 1;
    pub const REM: u8 = 2;
    pub const SCORE: u8 = 3;
    pub const M_SCORE: u8 = 4;
    pub const CARD: u8 = 5;
    pub const COUNT: u8 = 6;
    pub const LEX_COUNT: u8 = 7;
    pub const RANGE: u8 = 8;
    pub const RANGE_STORE: u8 = 9;
    pub const RANK: u8 = 10;
    pub const POP: u8 = 11;
    pub const M_POP: u8 = 12;
    pub const REM_RANGE: u8 = 13;
    pub const COMBINE: u8 = 14;
    pub const INTER_CARD: u8 = 15;
    pub const RAND_MEMBER: u8 = 16;
    pub const SCAN: u8 = 17;
}

fn encode_keys(writer: &mut Writer, keys: &[Bytes]) {
    writer.len(keys.len());
    for key in keys {
        writer.bytes(key);
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

fn decode_score(reader: &mut Reader<'_>) -> Result<f64, DecodeError> {
    let value = reader.f64()?;
    if value.is_nan() {
        return Err(DecodeError::Invalid("NaN score"));
    }
    Ok(value)
}

fn encode_limit(writer: &mut Writer, limit: Option<(i64, i64)>) {
    match limit {
        None => writer.u8(0),
        Some((offset, count)) => {
            writer.u8(1);
            writer.i64(offset);
            writer.i64(count);
        }
    }
}

fn decode_limit(reader: &mut Reader<'_>) -> Result<Option<(i64, i64)>, DecodeError> {
    Ok(if reader.bool()? {
        Some((reader.i64()?, reader.i64()?))
    } else {
        None
    })
}

fn encode_score_range(writer: &mut Writer, range: &ScoreRange) {
    writer.f64(range.min);
    writer.bool(range.min_exclusive);
    writer.f64(range.max);
    writer.bool(range.max_exclusive);
}

fn decode_score_range(reader: &mut Reader<'_>) -> Result<ScoreRange, DecodeError> {
    Ok(ScoreRange {
        min: decode_score(reader)?,
        min_exclusive: reader.bool()?,
        max: decode_score(reader)?,
        max_exclusive: reader.bool()?,
    })
}

fn encode_lex_bound(writer: &mut Writer, bound: &LexBound) {
    match bound {
        LexBound::Lowest => writer.u8(0),
        LexBound::Highest => writer.u8(1),
        LexBound::Inclusive(text) => {
            writer.u8(2);
            writer.bytes(text);
        }
        LexBound::Exclusive(text) => {
            writer.u8(3);
            writer.bytes(text);
        }
    }
}

fn decode_lex_bound(reader: &mut Reader<'_>) -> Result<LexBound, DecodeError> {
    Ok(match reader.u8()? {
        0 => LexBound::Lowest,
        1 => LexBound::Highest,
        2 => LexBound::Inclusive(reader.bytes()?),
        3 => LexBound::Exclusive(reader.bytes()?),
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "lex bound",
                tag,
            })
        }
    })
}

fn encode_lex_range(writer: &mut Writer, range: &LexRange) {
    encode_lex_bound(writer, &range.min);
    encode_lex_bound(writer, &range.max);
}

fn decode_lex_range(reader: &mut Reader<'_>) -> Result<LexRange, DecodeError> {
    Ok(LexRange {
        min: decode_lex_bound(reader)?,
        max: decode_lex_bound(reader)?,
    })
}

fn encode_range_spec(writer: &mut Writer, range: &ZRangeSpec) {
    match range {
        ZRangeSpec::Rank { start, stop } => {
            writer.u8(0);
            writer.i64(*start);
            writer.i64(*stop);
        }
        ZRangeSpec::Score(range) => {
            writer.u8(1);
            encode_score_range(writer, range);
        }
        ZRangeSpec::Lex(range) => {
            writer.u8(2);
            encode_lex_range(writer, range);
        }
    }
}

fn decode_range_spec(reader: &mut Reader<'_>) -> Result<ZRangeSpec, DecodeError> {
    Ok(match reader.u8()? {
        0 => ZRangeSpec::Rank {
            start: reader.i64()?,
            stop: reader.i64()?,
        },
        1 => ZRangeSpec::Score(decode_score_range(reader)?),
        2 => ZRangeSpec::Lex(decode_lex_range(reader)?),
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "zset range",
                tag,
            })
        }
    })
}

/// `ZADD`'s flags as one bit each.
fn flags_byte(flags: ZAddFlags) -> u8 {
    u8::from(flags.only_new)
        | u8::from(flags.only_existing) << 1
        | u8::from(flags.only_greater) << 2
        | u8::from(flags.only_less) << 3
        | u8::from(flags.changed) << 4
        | u8::from(flags.increment) << 5
}

fn flags_from_byte(byte: u8) -> Result<ZAddFlags, DecodeError> {
    if byte >> 6 != 0 {
        return Err(DecodeError::Invalid("unknown zadd flag"));
    }
    Ok(ZAddFlags {
        only_new: byte & 1 != 0,
        only_existing: byte & 2 != 0,
        only_greater: byte & 4 != 0,
        only_less: byte & 8 != 0,
        changed: byte & 16 != 0,
        increment: byte & 32 != 0,
    })
}

/// Writes the sub-tag and fields of `command` (the family opcode is
/// already written).
pub(crate) fn encode(writer: &mut Writer, command: &ZSetCommand) {
    match command {
        ZSetCommand::Add { key, flags, pairs } => {
            writer.u8(sub::ADD);
            writer.bytes(key);
            writer.u8(flags_byte(*flags));
            writer.len(pairs.len());
            for (score, member) in pairs {
                writer.f64(*score);
                writer.bytes(member);
            }
        }
        ZSetCommand::IncrBy {
            key,
            increment,
            member,
        } => {
            writer.u8(sub::INCR_BY);
            writer.bytes(key);
            writer.f64(*increment);
            writer.bytes(member);
        }
        ZSetCommand::Rem { key, members } => {
            writer.u8(sub::REM);
            writer.bytes(key);
            encode_keys(writer, members);
        }
        ZSetCommand::Score { key, member } => {
            writer.u8(sub::SCORE);
            writer.bytes(key);
            writer.bytes(member);
        }
        ZSetCommand::MScore { key, members } => {
            writer.u8(sub::M_SCORE);
            writer.bytes(key);
            encode_keys(writer, members);
        }
        ZSetCommand::Card { key } => {
            writer.u8(sub::CARD);
            writer.bytes(key);
        }
        ZSetCommand::Count { key, range } => {
            writer.u8(sub::COUNT);
            writer.bytes(key);
            encode_score_range(writer, range);
        }
        ZSetCommand::LexCount { key, range } => {
            writer.u8(sub::LEX_COUNT);
            writer.bytes(key);
            encode_lex_range(writer, range);
        }
        ZSetCommand::Range {
            key,
            range,
            reverse,
            limit,
            with_scores,
        } => {
            writer.u8(sub::RANGE);
            writer.bytes(key);
            encode_range_spec(writer, range);
            writer.bool(*reverse);
            encode_limit(writer, *limit);
            writer.bool(*with_scores);
        }
        ZSetCommand::RangeStore {
            destination,
            key,
            range,
            reverse,
            limit,
        } => {
            writer.u8(sub::RANGE_STORE);
            writer.bytes(destination);
            writer.bytes(key);
            encode_range_spec(writer, range);
            writer.bool(*reverse);
            encode_limit(writer, *limit);
        }
        ZSetCommand::Rank {
            key,
            member,
            reverse,
        } => {
            writer.u8(sub::RANK);
            writer.bytes(key);
            writer.bytes(member);
            writer.bool(*reverse);
        }
        ZSetCommand::Pop { key, max, count } => {
            writer.u8(sub::POP);
            writer.bytes(key);
            writer.bool(*max);
            match count {
                None => writer.u8(0),
                Some(count) => {
                    writer.u8(1);
                    writer.u64(*count);
                }
            }
        }
        ZSetCommand::MPop { keys, max, count } => {
            writer.u8(sub::M_POP);
            encode_keys(writer, keys);
            writer.bool(*max);
            writer.u64(*count);
        }
        ZSetCommand::RemRange { key, range } => {
            writer.u8(sub::REM_RANGE);
            writer.bytes(key);
            encode_range_spec(writer, range);
        }
        ZSetCommand::Combine {
            operation,
            destination,
            keys,
            weights,
            aggregate,
            with_scores,
        } => {
            writer.u8(sub::COMBINE);
            writer.u8(match operation {
                SetOperation::Union => 0,
                SetOperation::Inter => 1,
                SetOperation::Diff => 2,
            });
            writer.optional_bytes(destination.as_ref());
            encode_keys(writer, keys);
            writer.len(weights.len());
            for weight in weights {
                writer.f64(*weight);
            }
            writer.u8(match aggregate {
                Aggregate::Sum => 0,
                Aggregate::Min => 1,
                Aggregate::Max => 2,
            });
            writer.bool(*with_scores);
        }
        ZSetCommand::InterCard { keys, limit } => {
            writer.u8(sub::INTER_CARD);
            encode_keys(writer, keys);
            writer.u64(*limit);
        }
        ZSetCommand::RandMember {
            key,
            count,
            with_scores,
        } => {
            writer.u8(sub::RAND_MEMBER);
            writer.bytes(key);
            match count {
                None => writer.u8(0),
                Some(count) => {
                    writer.u8(1);
                    writer.i64(*count);
                }
            }
            writer.bool(*with_scores);
        }
        ZSetCommand::Scan {
            key,
            cursor,
            pattern,
            count,
        } => {
            writer.u8(sub::SCAN);
            writer.bytes(key);
            writer.u64(*cursor);
            writer.optional_bytes(pattern.as_ref());
            writer.u64(*count);
        }
    }
}

/// Reads what [`encode`] wrote (after the family opcode).
pub(crate) fn decode(reader: &mut Reader<'_>) -> Result<ZSetCommand, DecodeError> {
    let command = match reader.u8()? {
        sub::ADD => {
            let key = reader.bytes()?;
            let flags = flags_from_byte(reader.u8()?)?;
            let len = reader.len(12)?;
            if len == 0 {
                return Err(DecodeError::Invalid("zadd without members"));
            }
            let mut pairs = Vec::with_capacity(len);
            for _ in 0..len {
                let score = decode_score(reader)?;
                pairs.push((score, reader.bytes()?));
            }
            ZSetCommand::Add { key, flags, pairs }
        }
        sub::INCR_BY => ZSetCommand::IncrBy {
            key: reader.bytes()?,
            increment: decode_score(reader)?,
            member: reader.bytes()?,
        },
        sub::REM => ZSetCommand::Rem {
            key: reader.bytes()?,
            members: decode_keys(reader)?,
        },
        sub::SCORE => ZSetCommand::Score {
            key: reader.bytes()?,
            member: reader.bytes()?,
        },
        sub::M_SCORE => ZSetCommand::MScore {
            key: reader.bytes()?,
            members: decode_keys(reader)?,
        },
        sub::CARD => ZSetCommand::Card {
            key: reader.bytes()?,
        },
        sub::COUNT => ZSetCommand::Count {
            key: reader.bytes()?,
            range: decode_score_range(reader)?,
        },
        sub::LEX_COUNT => ZSetCommand::LexCount {
            key: reader.bytes()?,
            range: decode_lex_range(reader)?,
        },
        sub::RANGE => ZSetCommand::Range {
            key: reader.bytes()?,
            range: decode_range_spec(reader)?,
            reverse: reader.bool()?,
            limit: decode_limit(reader)?,
            with_scores: reader.bool()?,
        },
        sub::RANGE_STORE => ZSetCommand::RangeStore {
            destination: reader.bytes()?,
            key: reader.bytes()?,
            range: decode_range_spec(reader)?,
            reverse: reader.bool()?,
            limit: decode_limit(reader)?,
        },
        sub::RANK => ZSetCommand::Rank {
            key: reader.bytes()?,
            member: reader.bytes()?,
            reverse: reader.bool()?,
        },
        sub::POP => ZSetCommand::Pop {
            key: reader.bytes()?,
            max: reader.bool()?,
            count: if reader.bool()? {
                Some(reader.u64()?)
            } else {
                None
            },
        },
        sub::M_POP => {
            let keys = decode_keys(reader)?;
            let max = reader.bool()?;
            let count = reader.u64()?;
            if keys.is_empty() || count == 0 {
                return Err(DecodeError::Invalid("zmpop without keys or count"));
            }
            ZSetCommand::MPop { keys, max, count }
        }
        sub::REM_RANGE => ZSetCommand::RemRange {
            key: reader.bytes()?,
            range: decode_range_spec(reader)?,
        },
        sub::COMBINE => {
            let operation = match reader.u8()? {
                0 => SetOperation::Union,
                1 => SetOperation::Inter,
                2 => SetOperation::Diff,
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "zset operation",
                        tag,
                    })
                }
            };
            let destination = reader.optional_bytes()?;
            let keys = decode_keys(reader)?;
            let len = reader.len(8)?;
            let mut weights = Vec::with_capacity(len);
            for _ in 0..len {
                weights.push(decode_score(reader)?);
            }
            if keys.is_empty() || (!weights.is_empty() && weights.len() != keys.len()) {
                return Err(DecodeError::Invalid("zset operation keys and weights"));
            }
            let aggregate = match reader.u8()? {
                0 => Aggregate::Sum,
                1 => Aggregate::Min,
                2 => Aggregate::Max,
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "zset aggregate",
                        tag,
                    })
                }
            };
            ZSetCommand::Combine {
                operation,
                destination,
                keys,
                weights,
                aggregate,
                with_scores: reader.bool()?,
            }
        }
        sub::INTER_CARD => {
            let keys = decode_keys(reader)?;
            if keys.is_empty() {
                return Err(DecodeError::Invalid("zintercard without keys"));
            }
            ZSetCommand::InterCard {
                keys,
                limit: reader.u64()?,
            }
        }
        sub::RAND_MEMBER => ZSetCommand::RandMember {
            key: reader.bytes()?,
            count: if reader.bool()? {
                Some(reader.i64()?)
            } else {
                None
            },
            with_scores: reader.bool()?,
        },
        sub::SCAN => {
            let key = reader.bytes()?;
            let cursor = reader.u64()?;
            let pattern = reader.optional_bytes()?;
            let count = reader.u64()?;
            if count == 0 {
                return Err(DecodeError::Invalid("zscan count of 0"));
            }
            ZSetCommand::Scan {
                key,
                cursor,
                pattern,
                count,
            }
        }
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "zset command",
                tag,
            })
        }
    };
    Ok(command)
}
