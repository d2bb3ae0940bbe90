//! The sorted-set commands (issue 16), one [`KvCommand::ZSet`] family.
//!
//! Like every command, each is a pure description: ranges and options are
//! parsed (see `crate::parse_zset`), everything that depends on the data is
//! decided at apply time (see `crate::ops::zsets`).
//!
//! [`KvCommand::ZSet`]: crate::command::KvCommand::ZSet

use bytes::Bytes;

/// `ZADD`'s `NX`/`XX`/`GT`/`LT` (the parser refuses the incompatible
/// combinations).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZAddFlags {
    /// `NX`: only add new members.
    pub only_new: bool,
    /// `XX`: only update existing members.
    pub only_existing: bool,
    /// `GT`: only update to a greater score.
    pub only_greater: bool,
    /// `LT`: only update to a smaller score.
    pub only_less: bool,
    /// `CH`: count changed members, not only added ones.
    pub changed: bool,
    /// `INCR`: add to the score (one pair only) and reply the new score.
    pub increment: bool,
}

/// A score interval (`ZRANGEBYSCORE`'s `min max`, `(` for exclusive).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreRange {
    /// Lower end; never NaN.
    pub min: f64,
    /// Whether `min` itself is excluded.
    pub min_exclusive: bool,
    /// Upper end; never NaN.
    pub max: f64,
    /// Whether `max` itself is excluded.
    pub max_exclusive: bool,
}

impl ScoreRange {
    /// Whether `score` is at or past the lower end.
    pub fn above_min(&self, score: f64) -> bool {
        if self.min_exclusive {
            score > self.min
        } else {
            score >= self.min
        }
    }

    /// Whether `score` is at or before the upper end.
    pub fn below_max(&self, score: f64) -> bool {
        if self.max_exclusive {
            score < self.max
        } else {
            score <= self.max
        }
    }

    /// Whether no score can be in the range (Redis checks this first).
    pub fn is_empty(&self) -> bool {
        self.min > self.max || (self.min == self.max && (self.min_exclusive || self.max_exclusive))
    }
}

/// One end of a lexicographic range (`-`, `+`, `[x`, `(x`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LexBound {
    /// `-`: before every member.
    Lowest,
    /// `+`: after every member.
    Highest,
    /// `[x`: x included.
    Inclusive(Bytes),
    /// `(x`: x excluded.
    Exclusive(Bytes),
}

/// A lexicographic interval (`ZRANGEBYLEX`'s `min max`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LexRange {
    /// Lower end.
    pub min: LexBound,
    /// Upper end.
    pub max: LexBound,
}

impl LexRange {
    /// Whether `member` is at or past the lower end.
    pub fn above_min(&self, member: &[u8]) -> bool {
        match &self.min {
            LexBound::Lowest => true,
            LexBound::Highest => false,
            LexBound::Inclusive(min) => member >= min.as_ref(),
            LexBound::Exclusive(min) => member > min.as_ref(),
        }
    }

    /// Whether `member` is at or before the upper end.
    pub fn below_max(&self, member: &[u8]) -> bool {
        match &self.max {
            LexBound::Lowest => false,
            LexBound::Highest => true,
            LexBound::Inclusive(max) => member <= max.as_ref(),
            LexBound::Exclusive(max) => member < max.as_ref(),
        }
    }

    /// Whether no member can be in the range (Redis' `zslIsInLexRange`
    /// precheck).
    pub fn is_empty(&self) -> bool {
        let text = |bound: &LexBound| match bound {
            LexBound::Inclusive(text) | LexBound::Exclusive(text) => Some(text.clone()),
            _ => None,
        };
        match (&self.min, &self.max) {
            (LexBound::Highest, _) | (_, LexBound::Lowest) => true,
            (LexBound::Lowest, _) | (_, LexBound::Highest) => false,
            (min, max) => {
                let (Some(low), Some(high)) = (text(min), text(max)) else {
                    return false;
                };
                let exclusive =
                    matches!(min, LexBound::Exclusive(_)) || matches!(max, LexBound::Exclusive(_));
                low > high || (low == high && exclusive)
            }
        }
    }
}

/// What a `ZRANGE`-family command selects.
#[derive(Clone, Debug, PartialEq)]
pub enum ZRangeSpec {
    /// By position: `start stop`, negative counting from the end.
    Rank { start: i64, stop: i64 },
    /// `BYSCORE`.
    Score(ScoreRange),
    /// `BYLEX`.
    Lex(LexRange),
}

/// How `ZUNION`/`ZINTER` combine the scores of a member found in several
/// inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    /// `SUM` (the default).
    Sum,
    /// `MIN`.
    Min,
    /// `MAX`.
    Max,
}

/// Which set operation `ZUNION`/`ZINTER`/`ZDIFF` (and their `STORE`) run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOperation {
    /// `ZUNION`.
    Union,
    /// `ZINTER`.
    Inter,
    /// `ZDIFF`.
    Diff,
}

/// A sorted-set command.
#[derive(Clone, Debug, PartialEq)]
pub enum ZSetCommand {
    /// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member ...`.
    Add {
        key: Bytes,
        flags: ZAddFlags,
        /// At least one; scores never NaN.
        pairs: Vec<(f64, Bytes)>,
    },
    /// `ZINCRBY key increment member`.
    IncrBy {
        key: Bytes,
        increment: f64,
        member: Bytes,
    },
    /// `ZREM key member ...`.
    Rem { key: Bytes, members: Vec<Bytes> },
    /// `ZSCORE key member`.
    Score { key: Bytes, member: Bytes },
    /// `ZMSCORE key member ...`.
    MScore { key: Bytes, members: Vec<Bytes> },
    /// `ZCARD key`.
    Card { key: Bytes },
    /// `ZCOUNT key min max`.
    Count { key: Bytes, range: ScoreRange },
    /// `ZLEXCOUNT key min max`.
    LexCount { key: Bytes, range: LexRange },
    /// `ZRANGE` and its older forms (`ZREVRANGE`, `ZRANGEBYSCORE`, ...).
    Range {
        key: Bytes,
        range: ZRangeSpec,
        reverse: bool,
        /// `LIMIT offset count` (only with a score or lex range).
        limit: Option<(i64, i64)>,
        with_scores: bool,
    },
    /// `ZRANGESTORE destination source ...`.
    RangeStore {
        destination: Bytes,
        key: Bytes,
        range: ZRangeSpec,
        reverse: bool,
        limit: Option<(i64, i64)>,
    },
    /// `ZRANK`/`ZREVRANK key member`.
    Rank {
        key: Bytes,
        member: Bytes,
        reverse: bool,
    },
    /// `ZPOPMIN`/`ZPOPMAX key [count]`.
    Pop {
        key: Bytes,
        max: bool,
        /// `None`: one member, replied flat.
        count: Option<u64>,
    },
    /// `ZMPOP numkeys key ... MIN|MAX [COUNT count]`.
    MPop {
        keys: Vec<Bytes>,
        max: bool,
        /// At least 1.
        count: u64,
    },
    /// `ZREMRANGEBYRANK`/`BYSCORE`/`BYLEX key min max`.
    RemRange { key: Bytes, range: ZRangeSpec },
    /// `ZUNION`/`ZINTER`/`ZDIFF` and their `STORE` forms.
    Combine {
        operation: SetOperation,
        /// `Some` for the `STORE` forms.
        destination: Option<Bytes>,
        /// At least one.
        keys: Vec<Bytes>,
        /// One per key, or empty for all 1.
        weights: Vec<f64>,
        aggregate: Aggregate,
        with_scores: bool,
    },
    /// `ZINTERCARD numkeys key ... [LIMIT limit]` (0: no limit).
    InterCard { keys: Vec<Bytes>, limit: u64 },
    /// `ZRANDMEMBER key [count [WITHSCORES]]`; seeded by its place in the
    /// log, as `HRANDFIELD`.
    RandMember {
        key: Bytes,
        count: Option<i64>,
        with_scores: bool,
    },
    /// `ZSCAN key cursor [MATCH pattern] [COUNT count]`.
    Scan {
        key: Bytes,
        cursor: u64,
        pattern: Option<Bytes>,
        /// At least 1.
        count: u64,
    },
}

impl ZSetCommand {
    /// True when the command changes nothing.
    pub fn is_read(&self) -> bool {
        match self {
            ZSetCommand::Score { .. }
            | ZSetCommand::MScore { .. }
            | ZSetCommand::Card { .. }
            | ZSetCommand::Count { .. }
            | ZSetCommand::LexCount { .. }
            | ZSetCommand::Range { .. }
            | ZSetCommand::Rank { .. }
            | ZSetCommand::InterCard { .. }
            | ZSetCommand::RandMember { .. }
            | ZSetCommand::Scan { .. } => true,
            ZSetCommand::Combine { destination, .. } => destination.is_none(),
            ZSetCommand::Add { .. }
            | ZSetCommand::IncrBy { .. }
            | ZSetCommand::Rem { .. }
            | ZSetCommand::RangeStore { .. }
            | ZSetCommand::Pop { .. }
            | ZSetCommand::MPop { .. }
            | ZSetCommand::RemRange { .. } => false,
        }
    }

    /// The lowercase Redis name (for the older range forms, `zrange`).
    pub fn name(&self) -> &'static str {
        match self {
            ZSetCommand::Add { .. } => "zadd",
            ZSetCommand::IncrBy { .. } => "zincrby",
            ZSetCommand::Rem { .. } => "zrem",
            ZSetCommand::Score { .. } => "zscore",
            ZSetCommand::MScore { .. } => "zmscore",
            ZSetCommand::Card { .. } => "zcard",
            ZSetCommand::Count { .. } => "zcount",
            ZSetCommand::LexCount { .. } => "zlexcount",
            ZSetCommand::Range { .. } => "zrange",
            ZSetCommand::RangeStore { .. } => "zrangestore",
            ZSetCommand::Rank { reverse: false, .. } => "zrank",
            ZSetCommand::Rank { reverse: true, .. } => "zrevrank",
            ZSetCommand::Pop { max: false, .. } => "zpopmin",
            ZSetCommand::Pop { max: true, .. } => "zpopmax",
            ZSetCommand::MPop { .. } => "zmpop",
            ZSetCommand::RemRange { range, .. } => match range {
                ZRangeSpec::Rank { .. } => "zremrangebyrank",
                ZRangeSpec::Score(_) => "zremrangebyscore",
                ZRangeSpec::Lex(_) => "zremrangebylex",
            },
            ZSetCommand::Combine {
                operation,
                destination,
                ..
            } => match (operation, destination.is_some()) {
                (SetOperation::Union, false) => "zunion",
                (SetOperation::Union, true) => "zunionstore",
                (SetOperation::Inter, false) => "zinter",
                (SetOperation::Inter, true) => "zinterstore",
                (SetOperation::Diff, false) => "zdiff",
                (SetOperation::Diff, true) => "zdiffstore",
            },
            ZSetCommand::InterCard { .. } => "zintercard",
            ZSetCommand::RandMember { .. } => "zrandmember",
            ZSetCommand::Scan { .. } => "zscan",
        }
    }

    /// The keys the command reads or writes.
    pub fn keys(&self) -> Vec<&Bytes> {
        match self {
            ZSetCommand::Add { key, .. }
            | ZSetCommand::IncrBy { key, .. }
            | ZSetCommand::Rem { key, .. }
            | ZSetCommand::Score { key, .. }
            | ZSetCommand::MScore { key, .. }
            | ZSetCommand::Card { key }
            | ZSetCommand::Count { key, .. }
            | ZSetCommand::LexCount { key, .. }
            | ZSetCommand::Range { key, .. }
            | ZSetCommand::Rank { key, .. }
            | ZSetCommand::Pop { key, .. }
            | ZSetCommand::RemRange { key, .. }
            | ZSetCommand::RandMember { key, .. }
            | ZSetCommand::Scan { key, .. } => vec![key],
            ZSetCommand::RangeStore {
                destination, key, ..
            } => vec![destination, key],
            ZSetCommand::MPop { keys, .. } | ZSetCommand::InterCard { keys, .. } => {
                keys.iter().collect()
            }
            ZSetCommand::Combine {
                destination, keys, ..
            } => destination.iter().chain(keys).collect(),
        }
    }
}
