//! Redis' encoding tuning parameters (`hash-max-listpack-entries`,
//! `list-max-listpack-size`, ...), accepted by `CONFIG SET` as no-ops that
//! `CONFIG GET` reads back.
//!
//! In Redis these only choose an internal representation (listpack or hash
//! table, quicklist node size, compression depth), never what a command
//! answers. Synod has one representation per type, so there is nothing to
//! tune; clients and test suites still set them (often to save and restore
//! them around a test), and refusing would break them. The values are this
//! node's, not replicated: they change no state and no reply but `CONFIG
//! GET`'s. `OBJECT ENCODING` keeps reporting what Redis would with its
//! defaults (see `ops::keys_more::object`).
//!
//! `sanitize-dump-payload` is accepted the same way: Synod always checks a
//! `RESTORE` payload in full (see [`crate::dump`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

use synod_resp::Reply;

/// How a parameter's value is checked.
#[derive(Clone, Copy)]
enum Kind {
    /// An integer within these bounds.
    Integer { min: i64, max: i64 },
    /// One of these words (any case; stored lowercase).
    Word(&'static [&'static str]),
}

/// One parameter: its name, the Redis 6 name it also answers to, its Redis
/// 7.0 default and its kind.
struct Parameter {
    name: &'static str,
    alias: Option<&'static str>,
    default: &'static str,
    kind: Kind,
}

const SIZE: Kind = Kind::Integer {
    min: 0,
    max: i64::MAX,
};
const INT: Kind = Kind::Integer {
    min: i32::MIN as i64,
    max: i32::MAX as i64,
};
const NON_NEGATIVE_INT: Kind = Kind::Integer {
    min: 0,
    max: i32::MAX as i64,
};

const PARAMETERS: &[Parameter] = &[
    Parameter {
        name: "hash-max-listpack-entries",
        alias: Some("hash-max-ziplist-entries"),
        default: "128",
        kind: SIZE,
    },
    Parameter {
        name: "hash-max-listpack-value",
        alias: Some("hash-max-ziplist-value"),
        default: "64",
        kind: SIZE,
    },
    Parameter {
        name: "list-max-listpack-size",
        alias: Some("list-max-ziplist-size"),
        default: "-2",
        kind: INT,
    },
    Parameter {
        name: "list-compress-depth",
        alias: None,
        default: "0",
        kind: NON_NEGATIVE_INT,
    },
    Parameter {
        name: "set-max-intset-entries",
        alias: None,
        default: "512",
        kind: SIZE,
    },
    Parameter {
        name: "zset-max-listpack-entries",
        alias: Some("zset-max-ziplist-entries"),
        default: "128",
        kind: SIZE,
    },
    Parameter {
        name: "zset-max-listpack-value",
        alias: Some("zset-max-ziplist-value"),
        default: "64",
        kind: SIZE,
    },
    Parameter {
        name: "stream-node-max-bytes",
        alias: None,
        default: "4096",
        kind: SIZE,
    },
    Parameter {
        name: "stream-node-max-entries",
        alias: None,
        default: "100",
        kind: SIZE,
    },
    Parameter {
        name: "sanitize-dump-payload",
        alias: None,
        default: "no",
        kind: Kind::Word(&["no", "yes", "clients"]),
    },
];

/// This node's values of the tuning parameters.
#[derive(Debug, Default)]
pub(crate) struct Tuning {
    /// Values set by `CONFIG SET`, by canonical name; the rest have their
    /// defaults.
    set: Mutex<BTreeMap<&'static str, String>>,
}

fn find(name: &str) -> Option<&'static Parameter> {
    PARAMETERS
        .iter()
        .find(|p| p.name == name || p.alias == Some(name))
}

/// The name of the parameter `name` (lowercase) is, or an alias of: what
/// CONFIG SET's duplicate check compares; `None` if not a tuning parameter.
pub(crate) fn canonical(name: &str) -> Option<&'static str> {
    find(name).map(|parameter| parameter.name)
}

/// Whether `name` (lowercase) is a tuning parameter.
pub(crate) fn is_tuning(name: &str) -> bool {
    find(name).is_some()
}

impl Tuning {
    fn value(&self, parameter: &Parameter) -> String {
        let set = self.set.lock().unwrap_or_else(|e| e.into_inner());
        set.get(parameter.name)
            .cloned()
            .unwrap_or_else(|| parameter.default.to_string())
    }

    /// The `(name, value)` pairs `CONFIG GET pattern` answers (pattern
    /// lowercase): every canonical name the glob matches, and an old name
    /// asked for exactly, as Redis 7.0 does.
    pub(crate) fn get(&self, pattern: &str) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for parameter in PARAMETERS {
            if crate::glob::glob_match(pattern.as_bytes(), parameter.name.as_bytes()) {
                out.push((parameter.name, self.value(parameter)));
            } else if parameter.alias == Some(pattern) {
                out.push((
                    parameter.alias.unwrap_or(parameter.name),
                    self.value(parameter),
                ));
            }
        }
        out
    }

    /// Checks `value` for the parameter `name` (lowercase): the normalized
    /// value, or the reason to quote in Redis' CONFIG SET error.
    pub(crate) fn check(name: &str, value: &[u8]) -> Result<(&'static str, String), String> {
        let Some(parameter) = find(name) else {
            return Err("Unknown option or number of arguments for CONFIG SET".into());
        };
        let text = String::from_utf8_lossy(value);
        match parameter.kind {
            Kind::Integer { min, max } => match text.parse::<i64>() {
                Ok(number) if (min..=max).contains(&number) => {
                    Ok((parameter.name, number.to_string()))
                }
                Ok(_) => Err(format!(
                    "argument must be between {min} and {max} inclusive"
                )),
                Err(_) => Err("argument couldn't be parsed into an integer".into()),
            },
            Kind::Word(words) => {
                let lower = text.to_ascii_lowercase();
                if words.contains(&lower.as_str()) {
                    Ok((parameter.name, lower))
                } else {
                    Err("argument(s) must be one of the following: ".to_string()
                        + &words.join(", "))
                }
            }
        }
    }

    /// Stores values [`Tuning::check`] accepted.
    pub(crate) fn set(&self, values: Vec<(&'static str, String)>) {
        let mut set = self.set.lock().unwrap_or_else(|e| e.into_inner());
        for (name, value) in values {
            set.insert(name, value);
        }
    }
}

/// Redis' error for a CONFIG SET argument it refuses.
pub(crate) fn set_error(name: &[u8], reason: &str) -> Reply {
    Reply::error(format!(
        "ERR CONFIG SET failed (possibly related to argument '{}') - {reason}",
        String::from_utf8_lossy(name)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_read_back_under_both_names() {
        let tuning = Tuning::default();
        assert_eq!(
            tuning.get("list-max-ziplist-size"),
            vec![("list-max-ziplist-size", "-2".to_string())]
        );
        let checked = Tuning::check("list-max-ziplist-size", b"4").unwrap();
        tuning.set(vec![checked]);
        assert_eq!(
            tuning.get("list-max-listpack-size"),
            vec![("list-max-listpack-size", "4".to_string())]
        );
        assert_eq!(tuning.get("hash-max-*").len(), 2);
        assert!(Tuning::check("list-compress-depth", b"-1").is_err());
        assert!(Tuning::check("hash-max-listpack-entries", b"x").is_err());
        assert_eq!(
            Tuning::check("sanitize-dump-payload", b"YES"),
            Ok(("sanitize-dump-payload", "yes".to_string()))
        );
        assert!(Tuning::check("maxmemory", b"1").is_err());
    }
}
