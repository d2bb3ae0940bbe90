//! What a chaos run reports: operations by type and outcome, availability
//! during and outside faults, failover times, membership replacements, and
//! the checker's verdict. Operations and faults name *slots* (a place with
//! fixed addresses); a membership fault says which node ids it swapped.

use super::client::Record;
use super::membership::Replace;
use super::nemesis::Fault;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;
use synod_check::{Outcome, Verdict};

pub struct RunReport {
    pub seed: u64,
    pub dir: PathBuf,
    pub network: String,
    pub fallback: Option<String>,
    pub kinds: Vec<&'static str>,
    pub skipped: Vec<&'static str>,
    pub nodes: u32,
    pub clients: u32,
    /// When client load ran (µs since the run began).
    pub load: (u64, u64),
    pub healed_at: u64,
    pub records: Vec<Record>,
    pub faults: Vec<Fault>,
    pub connect_failures: u64,
    pub verdict: Verdict,
    pub check_time: Duration,
    /// The INCR-only counters' tally.
    pub counters: Counters,
    /// Anything else wrong: crashes, unreadable nodes, malformed replies,
    /// lost increments.
    pub problems: Vec<String>,
}

/// The tally of the INCR-only counter keys: increments acknowledged and of
/// unknown outcome, against the final values every node read.
#[derive(Default, Clone, Copy, Debug)]
pub struct Counters {
    pub acknowledged: u64,
    pub unknown: u64,
    /// Sum over counters of the smallest final value any node read.
    pub final_min: u64,
    /// Acknowledged increments missing from a final value.
    pub lost: u64,
    /// Increments in a final value that no client asked for.
    pub phantom: u64,
}

/// Tallies the INCR-only counters (keys ending in `-counter`).
pub fn count_counters(records: &[Record]) -> Counters {
    #[derive(Default)]
    struct Key {
        acknowledged: u64,
        unknown: u64,
        finals: Vec<u64>,
    }
    let mut keys: BTreeMap<Vec<u8>, Key> = BTreeMap::new();
    for r in records {
        let (key, is_incr) = match &r.op {
            synod_check::Op::Incr { key, .. } => (key, true),
            synod_check::Op::Get { key } if r.kind() == "final-get" => (key, false),
            _ => continue,
        };
        if !key.ends_with(b"-counter") {
            continue;
        }
        let k = keys.entry(key.clone()).or_default();
        match (&r.outcome, is_incr) {
            (Outcome::Int(_), true) => k.acknowledged += 1,
            (Outcome::Unknown, true) => k.unknown += 1,
            (Outcome::Value(v), false) => k.finals.push(
                v.as_deref()
                    .and_then(synod_check::model::parse_int)
                    .map_or(0, |n| n.max(0) as u64),
            ),
            _ => {}
        }
    }
    let mut c = Counters::default();
    // A counter no node could read is reported as unreadable, not as lost.
    for k in keys.values().filter(|k| !k.finals.is_empty()) {
        let min = k.finals.iter().copied().min().unwrap_or(0);
        let max = k.finals.iter().copied().max().unwrap_or(0);
        c.acknowledged += k.acknowledged;
        c.unknown += k.unknown;
        c.final_min += min;
        c.lost += k.acknowledged.saturating_sub(min);
        c.phantom += max.saturating_sub(k.acknowledged + k.unknown);
    }
    c
}

#[derive(Default, Clone, Copy)]
struct Counts {
    ok: u64,
    unknown: u64,
    /// Error replies that do not say the outcome is unknown.
    failed: u64,
}

impl Counts {
    fn add(&mut self, r: &Record) {
        match (&r.outcome, &r.error) {
            (Outcome::Unknown, Some(e)) if !e.contains("outcome is unknown") => self.failed += 1,
            (Outcome::Unknown, _) => self.unknown += 1,
            _ => self.ok += 1,
        }
    }

    fn total(&self) -> u64 {
        self.ok + self.unknown + self.failed
    }

    fn ok_percent(&self) -> f64 {
        if self.total() == 0 {
            return 100.0;
        }
        100.0 * self.ok as f64 / self.total() as f64
    }
}

/// The `q` quantile of sorted durations.
fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let k = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[k])
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    })
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.verdict.is_linearizable() && self.problems.is_empty()
    }

    fn by_kind(&self) -> BTreeMap<&'static str, Counts> {
        let mut by = BTreeMap::new();
        for r in &self.records {
            by.entry(r.kind()).or_insert_with(Counts::default).add(r);
        }
        by
    }

    /// Client operations (final reads excluded) invoked during a fault and
    /// outside faults.
    fn availability(&self) -> (Counts, Counts) {
        let mut during = Counts::default();
        let mut outside = Counts::default();
        for r in self.records.iter().filter(|r| r.kind() != "final-get") {
            let in_fault = self
                .faults
                .iter()
                .any(|f| r.invoke >= f.start && r.invoke < f.end);
            if in_fault {
                during.add(r);
            } else {
                outside.add(r);
            }
        }
        (during, outside)
    }

    fn failovers(&self) -> (Vec<Duration>, usize) {
        let hits: Vec<&Fault> = self.faults.iter().filter(|f| f.leader_hit).collect();
        let mut times: Vec<Duration> = hits.iter().filter_map(|f| f.failover).collect();
        times.sort();
        let missing = hits.len() - times.len();
        (times, missing)
    }

    /// The membership nemesis' line: how many replacements, how soon the
    /// new nodes voted, the failovers of leader replacements; `None` if
    /// there were none.
    fn membership_line(&self) -> Option<String> {
        let replaces: Vec<(&Fault, &Replace)> = self
            .faults
            .iter()
            .filter_map(|f| f.replace.as_ref().map(|r| (f, r)))
            .collect();
        if replaces.is_empty() {
            return None;
        }
        let mut voting: Vec<Duration> =
            replaces.iter().filter_map(|(_, r)| r.voter_after).collect();
        voting.sort();
        let mut failovers: Vec<Duration> = replaces
            .iter()
            .filter(|(f, _)| f.leader_hit)
            .filter_map(|(f, _)| f.failover)
            .collect();
        failovers.sort();
        let leaders = replaces.iter().filter(|(f, _)| f.leader_hit).count();
        Some(format!(
            "membership: {} replaces ({}), {} new nodes voting within the fault (after p50 {}, max {}); {} of leaders, failover p50 {}, max {} ({} measured)",
            replaces.len(),
            replaces
                .iter()
                .map(|(_, r)| format!("{}->{}", r.old, r.new))
                .collect::<Vec<_>>()
                .join(", "),
            voting.len(),
            ms(quantile(&voting, 0.5)),
            ms(voting.last().copied()),
            leaders,
            ms(quantile(&failovers, 0.5)),
            ms(failovers.last().copied()),
            failovers.len()
        ))
    }

    /// The verdict line.
    fn verdict_line(&self) -> String {
        let verdict = match &self.verdict {
            Verdict::Linearizable => "linearizable".to_string(),
            Verdict::NotLinearizable { key_group, .. } => format!(
                "NOT LINEARIZABLE (keys {})",
                key_group
                    .iter()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Verdict::Undetermined { reason } => format!("UNDETERMINED ({reason})"),
        };
        if self.problems.is_empty() {
            verdict
        } else {
            format!("{verdict}; PROBLEMS: {}", self.problems.join("; "))
        }
    }

    /// The full report.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "== chaos run seed {}: {} nodes, {} clients, {:.0} s of load",
            self.seed,
            self.nodes,
            self.clients,
            (self.load.1 - self.load.0) as f64 / 1e6
        );
        let _ = writeln!(s, "network:  {}", self.network);
        if let Some(why) = &self.fallback {
            let _ = writeln!(s, "          (namespaces unavailable: {why})");
        }
        let _ = writeln!(
            s,
            "nemeses:  {}{}",
            self.kinds.join(", "),
            if self.skipped.is_empty() {
                String::new()
            } else {
                format!(" (skipped, unsupported here: {})", self.skipped.join(", "))
            }
        );
        let mut per_kind: BTreeMap<&str, usize> = BTreeMap::new();
        for f in &self.faults {
            *per_kind.entry(f.kind.name()).or_default() += 1;
        }
        let _ = writeln!(
            s,
            "faults:   {} ({})",
            self.faults.len(),
            per_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            s,
            "{:<12} {:>8} {:>8} {:>8}",
            "operation", "ok", "unknown", "failed"
        );
        let mut total = Counts::default();
        for (kind, c) in self.by_kind() {
            let _ = writeln!(s, "{kind:<12} {:>8} {:>8} {:>8}", c.ok, c.unknown, c.failed);
            total.ok += c.ok;
            total.unknown += c.unknown;
            total.failed += c.failed;
        }
        let _ = writeln!(
            s,
            "{:<12} {:>8} {:>8} {:>8}   (+{} connection attempts refused)",
            "total", total.ok, total.unknown, total.failed, self.connect_failures
        );
        let (during, outside) = self.availability();
        let _ = writeln!(
            s,
            "availability: {:.1}% of {} operations ok during faults, {:.1}% of {} outside",
            during.ok_percent(),
            during.total(),
            outside.ok_percent(),
            outside.total()
        );
        let (times, missing) = self.failovers();
        let _ = writeln!(
            s,
            "failover (leader faults: first acknowledged write elsewhere): {} measured, p50 {}, p99 {}, max {}{}",
            times.len(),
            ms(quantile(&times, 0.5)),
            ms(quantile(&times, 0.99)),
            ms(times.last().copied()),
            if missing > 0 {
                format!(", {missing} not within the fault")
            } else {
                String::new()
            }
        );
        if let Some(line) = self.membership_line() {
            let _ = writeln!(s, "{line}");
        }
        let c = self.counters;
        let _ = writeln!(
            s,
            "counters: {} acknowledged INCRs, {} unknown; final values sum to {}; acknowledged writes lost: {}; unexplained increments: {}",
            c.acknowledged, c.unknown, c.final_min, c.lost, c.phantom
        );
        let _ = writeln!(
            s,
            "checked {} operations in {:.2} s",
            self.records.len(),
            self.check_time.as_secs_f64()
        );
        let _ = write!(s, "verdict:  {}", self.verdict_line());
        if !self.passed() {
            let _ = write!(
                s,
                "\nkept:     {} (history.txt, report.txt, node-*.log)",
                self.dir.display()
            );
        }
        s
    }

    /// Writes `history.txt` (every operation, in invocation order), the
    /// fault timeline and `report.txt` (with the checker's explanation).
    pub fn write_files(&self) -> Result<(), String> {
        let mut history = String::new();
        let mut records: Vec<&Record> = self.records.iter().collect();
        records.sort_by_key(|r| (r.invoke, r.client));
        for f in &self.faults {
            let _ = writeln!(
                history,
                "# fault {:>10} .. {:>10} µs: {} ({}){}",
                f.start,
                f.end,
                f.what,
                f.kind.name(),
                match (f.leader_hit, f.failover) {
                    (true, Some(d)) => format!("; failover {} ms", d.as_millis()),
                    (true, None) => "; no failover within the fault".into(),
                    _ => String::new(),
                }
            );
        }
        let _ = writeln!(history, "# every fault healed at {} µs", self.healed_at);
        for r in records {
            let _ = writeln!(
                history,
                "{:>10} {:>10} client {:>7} slot {} {:?} -> {:?}{}",
                r.invoke,
                r.complete,
                r.client,
                r.node,
                r.op,
                r.outcome,
                r.error
                    .as_ref()
                    .map(|e| format!(" [{e}]"))
                    .unwrap_or_default()
            );
        }
        let write = |name: &str, text: &str| {
            let path = self.dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        write("history.txt", &history)?;
        let mut report = self.summary();
        report.push('\n');
        if let Verdict::NotLinearizable { explanation, .. } = &self.verdict {
            report.push_str("\nThe checker's explanation:\n");
            report.push_str(explanation);
            report.push('\n');
        }
        write("report.txt", &report)
    }
}

/// Totals over many runs.
pub fn totals(reports: &[RunReport]) -> String {
    let mut during = Counts::default();
    let mut outside = Counts::default();
    let mut times = Vec::new();
    let mut missing = 0;
    let mut ops = Counts::default();
    let mut acknowledged = 0;
    let mut lost = 0;
    let mut phantom = 0;
    let mut replaces = 0;
    for r in reports {
        replaces += r.faults.iter().filter(|f| f.replace.is_some()).count();
        acknowledged += r.counters.acknowledged;
        lost += r.counters.lost;
        phantom += r.counters.phantom;
        let (d, o) = r.availability();
        for (acc, c) in [(&mut during, d), (&mut outside, o)] {
            acc.ok += c.ok;
            acc.unknown += c.unknown;
            acc.failed += c.failed;
        }
        for c in r.by_kind().values() {
            ops.ok += c.ok;
            ops.unknown += c.unknown;
            ops.failed += c.failed;
        }
        let (t, m) = r.failovers();
        times.extend(t);
        missing += m;
    }
    times.sort();
    format!(
        "== totals over {} runs: {} operations ({} ok, {} unknown, {} failed); counters: {} acknowledged INCRs, {} lost, {} unexplained; availability {:.1}% during faults, {:.1}% outside; failover p50 {}, p99 {}, max {} ({} measured, {} not within the fault); {} membership replaces",
        reports.len(),
        ops.total(),
        ops.ok,
        ops.unknown,
        ops.failed,
        acknowledged,
        lost,
        phantom,
        during.ok_percent(),
        outside.ok_percent(),
        ms(quantile(&times, 0.5)),
        ms(quantile(&times, 0.99)),
        ms(times.last().copied()),
        times.len(),
        missing,
        replaces
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::client::FINAL_READ_CLIENT;
    use synod_check::Op;

    fn record(client: u64, op: Op, outcome: Outcome) -> Record {
        Record {
            client,
            node: 1,
            op,
            outcome,
            invoke: 0,
            complete: 1,
            error: None,
        }
    }

    #[test]
    fn counters_find_lost_and_unexplained_increments() {
        let key = b"chaos-g0-counter".to_vec();
        let incr = |outcome| {
            record(
                0,
                Op::Incr {
                    key: key.clone(),
                    by: 1,
                },
                outcome,
            )
        };
        let read = |node: u64, value: &str| {
            record(
                FINAL_READ_CLIENT + node,
                Op::Get { key: key.clone() },
                Outcome::Value(Some(value.as_bytes().to_vec())),
            )
        };
        // Three acknowledged, one unknown: 3 or 4 is fine everywhere.
        let mut records = vec![
            incr(Outcome::Int(1)),
            incr(Outcome::Int(2)),
            incr(Outcome::Int(3)),
            incr(Outcome::Unknown),
            read(1, "4"),
            read(2, "3"),
        ];
        let c = count_counters(&records);
        assert_eq!((c.acknowledged, c.unknown, c.lost, c.phantom), (3, 1, 0, 0));
        // One node lost an increment, another has one nobody asked for.
        records.push(read(3, "2"));
        records.push(read(4, "5"));
        let c = count_counters(&records);
        assert_eq!((c.lost, c.phantom), (1, 1));
    }
}
