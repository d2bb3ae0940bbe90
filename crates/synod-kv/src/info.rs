//! INFO sections kept by the node itself: `cpu` (the process's CPU time),
//! `commandstats` (calls, time, rejections and failures per command) and
//! `errorstats` (error replies by their code, and `total_error_replies`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

#[cfg(test)]
use crate::conn::known_names;
use crate::conn::{stat_names, stat_names_sorted};

/// The `# CPU` section: seconds of CPU the process (and its waited-for
/// children: none) spent in the kernel and in user space.
pub(crate) fn cpu_section() -> String {
    let (self_sys, self_user) = rusage(libc::RUSAGE_SELF);
    let (children_sys, children_user) = rusage(libc::RUSAGE_CHILDREN);
    format!(
        "# CPU\r\nused_cpu_sys:{self_sys:.6}\r\nused_cpu_user:{self_user:.6}\r\nused_cpu_sys_children:{children_sys:.6}\r\nused_cpu_user_children:{children_user:.6}\r\n\r\n"
    )
}

/// System and user CPU seconds of `who` (0 if the call fails).
fn rusage(who: libc::c_int) -> (f64, f64) {
    // SAFETY: getrusage writes a `rusage` into the zeroed value it is given
    // and reads nothing else; an all-zero `rusage` is a valid value.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(who, &mut usage) != 0 {
            return (0.0, 0.0);
        }
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (seconds(usage.ru_stime), seconds(usage.ru_utime))
}

/// One command's figures, as Redis's `cmdstat_<name>` line shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CommandStat {
    /// Times it ran (rejected calls excluded).
    pub calls: u64,
    /// Microseconds from reading it to having its reply, summed.
    pub usec: u64,
    /// Refused before running: arity, authentication, ACL, a transaction's
    /// rules, out of memory.
    pub rejected_calls: u64,
    /// Ran and answered an error.
    pub failed_calls: u64,
}

impl CommandStat {
    /// Whether it was called (ran or was refused) since the start or the
    /// last reset: INFO lists only those.
    fn called(&self) -> bool {
        self.calls > 0 || self.rejected_calls > 0
    }
}

/// Per-command figures of this node (not replicated), for INFO commandstats.
/// Keyed by the names `COMMAND` lists, so bounded by the command table.
#[derive(Debug, Default)]
pub(crate) struct CommandStats {
    /// Indexed by the command's place in `stat_names`; empty until the
    /// first call.
    by_command: Mutex<Vec<CommandStat>>,
    errors: Mutex<ErrorStats>,
}

/// Most distinct error codes counted, as Redis' `ERROR_STATS_NUMBER`: codes
/// come from replies (a script's `redis.error_reply` picks any), so the
/// table is bounded; errors with further codes count in the total only.
pub(crate) const ERROR_CODES_MAX: usize = 128;

/// Error replies by code (`errorstat_<CODE>:count=<n>`) and in all.
#[derive(Debug, Default)]
struct ErrorStats {
    by_code: BTreeMap<String, u64>,
    total: u64,
    /// Errors whose code did not fit in [`ERROR_CODES_MAX`].
    untracked: u64,
}

/// The code Redis counts an error reply under: its first word when a space
/// comes within its first 32 bytes, else `ERR`.
pub(crate) fn error_code(text: &str) -> &str {
    let head = &text.as_bytes()[..text.len().min(32)];
    match head.iter().position(|&b| b == b' ') {
        Some(end) if end > 0 => &text[..end],
        _ => "ERR",
    }
}

/// How a command ended, for [`CommandStats::record`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Answered without an error.
    Ok,
    /// Ran, and answered an error.
    Failed,
    /// Refused before running.
    Rejected,
}

impl CommandStats {
    /// Counts one call of the command at `known` in `stat_names`.
    pub(crate) fn record(&self, known: usize, took: Duration, ending: Ending) {
        let mut by_command = self.by_command.lock().unwrap_or_else(|e| e.into_inner());
        if by_command.is_empty() {
            by_command.resize(stat_names().len(), CommandStat::default());
        }
        let Some(stat) = by_command.get_mut(known) else {
            debug_assert!(false, "command {known} is not listed");
            return;
        };
        match ending {
            Ending::Rejected => stat.rejected_calls += 1,
            Ending::Ok | Ending::Failed => {
                stat.calls += 1;
                stat.usec += u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                if ending == Ending::Failed {
                    stat.failed_calls += 1;
                }
            }
        }
    }

    /// Counts one error reply sent to a client.
    pub(crate) fn record_error(&self, text: &str) {
        let code = error_code(text);
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        errors.total += 1;
        if let Some(count) = errors.by_code.get_mut(code) {
            *count += 1;
        } else if errors.by_code.len() < ERROR_CODES_MAX {
            errors.by_code.insert(code.to_string(), 1);
        } else {
            errors.untracked += 1;
        }
    }

    /// Error replies sent since the start or the last reset
    /// (`total_error_replies`).
    pub(crate) fn total_error_replies(&self) -> u64 {
        self.errors.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// The `# Errorstats` section.
    pub(crate) fn error_section(&self) -> String {
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::from("# Errorstats\r\n");
        for (code, count) in errors.by_code.iter() {
            let _ = write!(text, "errorstat_{code}:count={count}\r\n");
        }
        text.push_str("\r\n");
        text
    }

    /// CONFIG RESETSTAT: forgets every figure kept here.
    pub(crate) fn reset(&self) {
        self.by_command
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        *self.errors.lock().unwrap_or_else(|e| e.into_inner()) = ErrorStats::default();
    }

    /// The figures of `name`, if it was called.
    #[cfg(test)]
    pub(crate) fn get(&self, name: &str) -> Option<CommandStat> {
        let by_command = self.by_command.lock().unwrap_or_else(|e| e.into_inner());
        let at = stat_names().iter().position(|n| n == name)?;
        by_command.get(at).copied().filter(CommandStat::called)
    }

    /// The `# Commandstats` section.
    pub(crate) fn section(&self) -> String {
        let by_command = self.by_command.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::from("# Commandstats\r\n");
        let names = stat_names();
        let called = stat_names_sorted()
            .iter()
            .filter_map(|&at| Some((&names[at], by_command.get(at)?)));
        for (name, stat) in called.filter(|(_, stat)| stat.called()) {
            let per_call = if stat.calls == 0 {
                0.0
            } else {
                stat.usec as f64 / stat.calls as f64
            };
            let _ = write!(
                text,
                "cmdstat_{name}:calls={},usec={},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}\r\n",
                stat.calls, stat.usec, stat.rejected_calls, stat.failed_calls
            );
        }
        text.push_str("\r\n");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_replies_are_counted_by_code_and_bounded() {
        let stats = CommandStats::default();
        stats.record_error("WRONGTYPE Operation against a key");
        stats.record_error("ERR unknown command");
        stats.record_error("ERR");
        stats.record_error("MY_ERR_CODE custom msg");
        stats.record_error(" leading space");
        assert_eq!(
            stats.error_section(),
            "# Errorstats\r\nerrorstat_ERR:count=3\r\nerrorstat_MY_ERR_CODE:count=1\r\nerrorstat_WRONGTYPE:count=1\r\n\r\n"
        );
        assert_eq!(error_code("AVERYLONGCODEWITHOUTANYSPACEINSIDEIT x"), "ERR");
        for i in 0..2 * ERROR_CODES_MAX {
            stats.record_error(&format!("C{i} x"));
        }
        assert_eq!(stats.total_error_replies(), 5 + 2 * ERROR_CODES_MAX as u64);
        assert_eq!(
            stats.error_section().matches("errorstat_").count(),
            ERROR_CODES_MAX
        );
        let set = known_names()
            .binary_search(&"set".to_string())
            .expect("listed");
        stats.record(set, Duration::ZERO, Ending::Ok);
        stats.reset();
        assert_eq!(stats.total_error_replies(), 0);
        assert_eq!(stats.get("set"), None);
        assert_eq!(stats.error_section(), "# Errorstats\r\n\r\n");
    }

    /// A container command's subcommand has a place of its own, printed in
    /// name order after its container's; other commands keep theirs.
    #[test]
    fn subcommands_are_counted_apart() {
        use crate::conn::stat_place;
        let place = |line: &str| {
            let args: Vec<bytes::Bytes> = line
                .split(' ')
                .map(|word| bytes::Bytes::copy_from_slice(word.as_bytes()))
                .collect();
            let known = known_names()
                .binary_search(
                    &args[0]
                        .iter()
                        .map(|b| b.to_ascii_lowercase() as char)
                        .collect::<String>(),
                )
                .expect("listed");
            stat_place(known, &args).map(|at| stat_names()[at].clone())
        };
        let some = |name: &str| Some(name.to_string());
        assert_eq!(place("CONFIG GeT maxmemory"), some("config|get"));
        assert_eq!(place("config"), some("config"));
        assert_eq!(place("client reply off"), some("client|reply"));
        assert_eq!(place("client setinfo lib-name x"), some("client|setinfo"));
        // An unknown subcommand is counted nowhere, as in Redis.
        assert_eq!(place("config foo"), None);
        assert_eq!(
            place("client nosuchsubcommandwithaverylongnamepastthebuffer"),
            None
        );
        assert_eq!(place("get k"), some("get"));
        assert_eq!(place("object encoding k"), some("object|encoding"));
        let stats = CommandStats::default();
        for line in ["client reply on", "client", "command count", "config get x"] {
            let args: Vec<bytes::Bytes> = line
                .split(' ')
                .map(|word| bytes::Bytes::copy_from_slice(word.as_bytes()))
                .collect();
            let known = known_names()
                .binary_search(&line.split(' ').next().unwrap_or_default().to_string())
                .expect("listed");
            let at = stat_place(known, &args).expect("counted");
            stats.record(at, Duration::ZERO, Ending::Ok);
        }
        let section = stats.section();
        let names: Vec<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("cmdstat_"))
            .map(|l| l.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            ["client", "client|reply", "command|count", "config|get"]
        );
        assert_eq!(stats.get("client|reply").map(|s| s.calls), Some(1));
    }

    /// `record` takes a place in the listed names, found by a binary search
    /// of a request's lowercase name of at most 32 bytes (see
    /// `conn::command_name`): the names must be sorted, unique, lowercase
    /// and that short.
    #[test]
    fn listed_names_can_be_searched() {
        let names = known_names();
        assert!(names.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(names
            .iter()
            .all(|name| name.len() <= 32 && *name == name.to_ascii_lowercase()));
    }

    #[test]
    fn command_stats_count_calls_rejections_and_failures() {
        let stats = CommandStats::default();
        let set = known_names()
            .binary_search(&"set".to_string())
            .expect("listed");
        stats.record(set, Duration::from_micros(10), Ending::Ok);
        stats.record(set, Duration::from_micros(30), Ending::Failed);
        stats.record(set, Duration::from_micros(99), Ending::Rejected);
        assert_eq!(
            stats.get("set"),
            Some(CommandStat {
                calls: 2,
                usec: 40,
                rejected_calls: 1,
                failed_calls: 1
            })
        );
        assert_eq!(stats.get("no-such-command"), None);
        let section = stats.section();
        assert!(
            section.contains(
                "cmdstat_set:calls=2,usec=40,usec_per_call=20.00,rejected_calls=1,failed_calls=1\r\n"
            ),
            "{section}"
        );
    }

    #[test]
    fn the_cpu_section_has_redis_fields() {
        let section = cpu_section();
        for field in ["used_cpu_sys:", "used_cpu_user:", "used_cpu_user_children:"] {
            assert!(section.contains(field), "{section}");
        }
    }
}
