//! Readable accounts of why a partition is not linearizable.

use crate::command::{Run, Slot};
use crate::wgl::{OpRef, Problem, UNKNOWN};
use crate::{Op, Operation, Outcome};
use std::collections::VecDeque;
use std::fmt;

/// How many steps of the longest prefix an explanation shows.
const PREFIX_SHOWN_MAX: usize = 10;
/// How many candidates an explanation lists.
const CANDIDATES_SHOWN_MAX: usize = 12;
/// Bytes of a key or value shown before eliding the rest.
const BYTES_SHOWN_MAX: usize = 48;

/// Displays a byte string quoted, escaped and, if long, shortened.
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.0[..self.0.len().min(BYTES_SHOWN_MAX)];
        write!(f, "\"{}", shown.escape_ascii())?;
        if shown.len() < self.0.len() {
            write!(f, "...\" ({} bytes)", self.0.len())
        } else {
            write!(f, "\"")
        }
    }
}

/// Displays an operation as a command line, e.g. `PUT "k" "v"`.
struct ShowOp<'a>(&'a Op);

impl fmt::Display for ShowOp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Op::WatchedTxn { watched, ops } => {
                write!(f, "WATCH")?;
                for (key, seen) in watched {
                    match seen {
                        Some(value) => write!(f, " {}={}", Bytes(key), Bytes(value))?,
                        None => write!(f, " {}=nil", Bytes(key))?,
                    }
                }
                write!(f, " ")?;
                write_txn(f, ops)
            }
            Op::Txn { ops } => write_txn(f, ops),
            Op::Get { key } => write!(f, "GET {}", Bytes(key)),
            Op::Put { key, value } => write!(f, "PUT {} {}", Bytes(key), Bytes(value)),
            Op::PutTtl { key, value } => write!(f, "SET {} {} PX", Bytes(key), Bytes(value)),
            Op::PutGet { key, value } => write!(f, "PUTGET {} {}", Bytes(key), Bytes(value)),
            Op::Delete { key } => write!(f, "DEL {}", Bytes(key)),
            Op::Append { key, value } => write!(f, "APPEND {} {}", Bytes(key), Bytes(value)),
            Op::Incr { key, by } => write!(f, "INCR {} by {by}", Bytes(key)),
            Op::Push { key, value } => write!(f, "RPUSH {} {}", Bytes(key), Bytes(value)),
            Op::Pop { key } => write!(f, "LPOP {}", Bytes(key)),
        }
    }
}

/// Writes a transaction's operations as `TXN [op; op]`.
fn write_txn(f: &mut fmt::Formatter<'_>, ops: &[Op]) -> fmt::Result {
    write!(f, "TXN [")?;
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            write!(f, "; ")?;
        }
        match op {
            // Not recursing: nesting depth comes from the input.
            Op::Txn { ops } | Op::WatchedTxn { ops, .. } => write!(f, "TXN [{} ops]", ops.len())?,
            single => write!(f, "{}", ShowOp(single))?,
        }
    }
    write!(f, "]")
}

/// Displays an outcome, e.g. `"v"`, `nil`, `OK`.
struct ShowOutcome<'a>(&'a Outcome);

impl fmt::Display for ShowOutcome<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Outcome::Txn(outcomes) => {
                write!(f, "[")?;
                for (i, outcome) in outcomes.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    match outcome {
                        Outcome::Txn(inner) => write!(f, "[{} outcomes]", inner.len())?,
                        single => write!(f, "{}", ShowOutcome(single))?,
                    }
                }
                write!(f, "]")
            }
            Outcome::Value(Some(value)) => write!(f, "{}", Bytes(value)),
            Outcome::Value(None) => write!(f, "nil"),
            Outcome::Ok => write!(f, "OK"),
            Outcome::Bool(b) => write!(f, "{b}"),
            Outcome::Int(n) => write!(f, "{n}"),
            Outcome::Error => write!(f, "ERR"),
            Outcome::Unknown => write!(f, "unknown"),
            Outcome::Aborted => write!(f, "aborted (nil)"),
        }
    }
}

/// Displays an operation of a history with its client, outcome and times.
pub(crate) struct Describe<'a>(pub(crate) &'a Operation);

impl fmt::Display for Describe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operation = self.0;
        write!(
            f,
            "client {}: {} -> ",
            operation.client,
            ShowOp(&operation.op)
        )?;
        if operation.outcome == Outcome::Unknown {
            write!(f, "unknown (invoked t={})", operation.invoke)
        } else {
            write!(
                f,
                "{} (t={}..{})",
                ShowOutcome(&operation.outcome),
                operation.invoke,
                operation.complete
            )
        }
    }
}

/// `"a", "b"`.
pub(crate) fn key_list(keys: &[&[u8]]) -> String {
    keys.iter()
        .map(|key| Bytes(key).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Explains a failed search: `path` is the longest linearizable prefix it
/// found, each operation with the branch it took (every configuration
/// explored was a dead end, this one included).
pub(crate) fn explain(problem: &Problem<'_>, path: &[(OpRef, u32)]) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    let completed_count = problem.completed.len();
    let unknown_count = problem.unknown.len();
    let _ = writeln!(
        text,
        "no linearization of these {} operations ({completed_count} completed, \
         {unknown_count} with an unknown outcome that may matter).",
        completed_count + unknown_count
    );

    let mut state = problem.initial_state();
    let mut linearized_completed = vec![false; completed_count];
    let mut linearized_unknown = vec![false; unknown_count];
    let mut last_steps: VecDeque<(usize, OpRef, u32, Outcome)> = VecDeque::new();
    for (step, &(op, branch)) in path.iter().enumerate() {
        let prepared = problem.get(op);
        let observed = &prepared.operation.outcome;
        let outcome = if *observed == Outcome::Unknown {
            match prepared.command.outcome(&state, branch) {
                Some((outcome, next)) => {
                    state = next;
                    outcome
                }
                None => Outcome::Unknown,
            }
        } else {
            // The search resolved any expiry by the observation; so does this.
            if let Run::Changed(next) = prepared.command.run(&state, observed, 0) {
                state = next;
            }
            observed.clone()
        };
        if op & UNKNOWN != 0 {
            linearized_unknown[(op & !UNKNOWN) as usize] = true;
        } else {
            linearized_completed[op as usize] = true;
        }
        if last_steps.len() == PREFIX_SHOWN_MAX {
            last_steps.pop_front();
        }
        last_steps.push_back((step + 1, op, branch, outcome));
    }
    let prefix_completed = linearized_completed.iter().filter(|&&x| x).count();
    let prefix_unknown = path.len() - prefix_completed;
    if path.is_empty() {
        let _ = writeln!(
            text,
            "No operation can take effect first (from the initial state, every key absent)."
        );
    } else {
        let _ = writeln!(
            text,
            "The longest linearizable prefix found has {} steps: {prefix_completed} of the \
             {completed_count} completed operations and {prefix_unknown} with an unknown \
             outcome. It ends:",
            path.len()
        );
        for (step, op, branch, outcome) in &last_steps {
            let prepared = problem.get(*op);
            let _ = write!(
                text,
                "  {step}. #{} {}",
                prepared.index,
                Describe(prepared.operation)
            );
            if prepared.operation.outcome == Outcome::Unknown {
                let _ = write!(
                    text,
                    ", taking effect here and returning {}",
                    ShowOutcome(outcome)
                );
                if *branch != 0 {
                    let _ = write!(text, " (a key it changes in place had expired)");
                }
            }
            let _ = writeln!(text);
        }
        let _ = writeln!(text, "State after it: {}.", show_state(problem, &state));
    }

    // The earliest-completing pending operation bounds what may go next.
    let Some(blocking) = linearized_completed.iter().position(|&x| !x) else {
        let _ = writeln!(
            text,
            "(every completed operation is linearized: checker bug)"
        );
        return text;
    };
    let blocking = &problem.completed[blocking];
    let bound = blocking.operation.complete;
    let mut candidates: Vec<OpRef> = (0..completed_count as u32)
        .filter(|&c| {
            !linearized_completed[c as usize]
                && problem.completed[c as usize].operation.invoke <= bound
        })
        .collect();
    candidates.sort_by_key(|&c| problem.completed[c as usize].operation.invoke);
    candidates.extend(
        (0..unknown_count as u32)
            .filter(|&u| {
                !linearized_unknown[u as usize]
                    && problem.unknown[u as usize].operation.invoke <= bound
            })
            .map(|u| u | UNKNOWN),
    );
    let _ = writeln!(
        text,
        "Next, #{} ({}) must take effect by t={bound}, but none of the operations that may go \
         first ({}) fits:",
        blocking.index,
        Describe(blocking.operation),
        candidates.len()
    );
    for &op in candidates.iter().take(CANDIDATES_SHOWN_MAX) {
        let prepared = problem.get(op);
        let observed = &prepared.operation.outcome;
        let verdict = match prepared.command.run(&state, observed, 0) {
            Run::Mismatch | Run::NoSuchBranch => format!(
                "here it would return {}",
                prepared
                    .command
                    .possible_outcomes(&state)
                    .iter()
                    .map(|outcome| ShowOutcome(outcome).to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            Run::Same | Run::Changed(_) => {
                "fits here, but no linearization continues from there".to_string()
            }
        };
        let _ = writeln!(
            text,
            "  - #{} {}: {verdict}",
            prepared.index,
            Describe(prepared.operation)
        );
    }
    if candidates.len() > CANDIDATES_SHOWN_MAX {
        let _ = writeln!(
            text,
            "  ... and {} more",
            candidates.len() - CANDIDATES_SHOWN_MAX
        );
    }
    text.truncate(text.trim_end().len());
    text
}

fn show_state(problem: &Problem<'_>, state: &[Slot]) -> String {
    problem
        .keys
        .iter()
        .zip(state)
        .map(|(key, slot)| match slot {
            Slot::Present(value) => format!("{} = {}", Bytes(key), Bytes(value)),
            Slot::Expiring(value) => {
                format!("{} = {} (may expire)", Bytes(key), Bytes(value))
            }
            Slot::Absent => format!("{} absent", Bytes(key)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
