//! The Wing–Gong–Lowe search over one partition.
//!
//! Completed operations live in a doubly linked list of call and return
//! entries sorted by time (calls before returns at equal times, so that equal
//! times count as concurrent). The operations that may be linearized next are
//! exactly the calls that come before the first return entry still in the
//! list: that return belongs to the earliest-completing operation not yet
//! linearized, and nothing invoked after it completed may go before it.
//! Linearizing an operation unlinks its two entries (in O(1), "dancing
//! links"); backtracking relinks them.
//!
//! Operations with an unknown outcome have no return entry (their completion
//! is +infinity) and live in a second list sorted by invocation. They are
//! tried after the completed candidates: a history is usually explained by
//! the completed operations alone, and the search should find that first.
//! An unknown-outcome operation on a key that may expire can have several
//! successor states (see [`crate::command`]); each of its branches is a
//! candidate of its own, tried in turn.
//!
//! The set of linearized completed operations is kept in a form whose size
//! does not grow with the history: operations are numbered in completion
//! order, `prefix` is the first one not linearized (all before it are), and
//! `above` lists the linearized ones after it. An operation in `above` was
//! linearized while the one at `prefix` was pending, so it was invoked before
//! that one completed: `above` is bounded by the concurrency of the history.

use crate::command::{Command, Run, Slot, State, FORKS_MAX};
use crate::explain;
use crate::memo::{Memo, States};
use crate::partition::Partition;
use crate::Operation;
use std::cmp::Reverse;

/// The verdict on one partition.
pub(crate) enum PartitionVerdict {
    Linearizable,
    NotLinearizable { explanation: String },
    Exhausted { reason: String },
}

/// One operation prepared for the search.
pub(crate) struct Prepared<'h> {
    /// Its index in the history.
    pub(crate) index: usize,
    pub(crate) operation: &'h Operation,
    pub(crate) command: Command<'h>,
    /// Whether it may have more than one branch: its outcome is unknown, it
    /// appends to or increments a key, and some operation of the partition
    /// sets a time to live. The search tries no other branch otherwise.
    pub(crate) may_fork: bool,
}

/// One partition, ready to search.
pub(crate) struct Problem<'h> {
    pub(crate) keys: &'h [&'h [u8]],
    /// Completed operations in completion order.
    pub(crate) completed: Vec<Prepared<'h>>,
    /// Unknown-outcome operations in invocation order.
    pub(crate) unknown: Vec<Prepared<'h>>,
}

/// An operation of the problem: a completed one's index, or an unknown one's
/// index with [`UNKNOWN`] set.
pub(crate) type OpRef = u32;

/// Marks an [`OpRef`] as naming an unknown-outcome operation.
pub(crate) const UNKNOWN: u32 = 1 << 31;

/// The end of a linked list.
const NIL: u32 = u32::MAX;

impl<'h> Problem<'h> {
    /// The prepared operation `op` names.
    pub(crate) fn get(&self, op: OpRef) -> &Prepared<'h> {
        if op & UNKNOWN != 0 {
            &self.unknown[(op & !UNKNOWN) as usize]
        } else {
            &self.completed[op as usize]
        }
    }

    /// The empty state: every key absent.
    pub(crate) fn initial_state(&self) -> State {
        vec![Slot::Absent; self.keys.len()].into()
    }
}

/// Checks one partition of `history`.
pub(crate) fn check_partition(
    history: &[Operation],
    partition: &Partition<'_>,
    max_states: u64,
) -> PartitionVerdict {
    let keys = partition.keys.as_slice();
    let index = |key: &[u8]| keys.binary_search(&key).ok();
    let mut completed = Vec::new();
    let mut unknown = Vec::new();
    for &i in &partition.ops {
        let Some(operation) = history.get(i) else {
            return internal_error("operation index outside the history");
        };
        let Some(command) = Command::compile(&operation.op, &index) else {
            return internal_error("operation on a key outside its partition");
        };
        let prepared = Prepared {
            index: i,
            operation,
            command,
            may_fork: false,
        };
        if operation.outcome == crate::Outcome::Unknown {
            unknown.push(prepared);
        } else {
            completed.push(prepared);
        }
    }
    let Some(last_complete) = completed.iter().map(|p| p.operation.complete).max() else {
        // Unknown operations alone can all "never have happened".
        return PartitionVerdict::Linearizable;
    };
    // An unknown operation invoked after every completion can go last, or
    // never: it constrains nothing.
    unknown.retain(|p| p.operation.invoke <= last_complete);
    if let Some(reason) = too_many_forks(&completed, &unknown) {
        return PartitionVerdict::Exhausted { reason };
    }
    if completed
        .iter()
        .chain(&unknown)
        .any(|p| p.command.sets_ttl())
    {
        for p in &mut unknown {
            p.may_fork = p.command.forks_max() > 0;
        }
    } else {
        for p in completed.iter_mut().chain(&mut unknown) {
            p.command.no_key_expires();
        }
    }
    completed.sort_by_key(|p| (p.operation.complete, p.operation.invoke, p.index));
    unknown.sort_by_key(|p| (p.operation.invoke, p.index));
    let problem = Problem {
        keys,
        completed,
        unknown,
    };
    // First the guided search, which finds the linearization of a correct
    // history quickly; only if it finds none, the exhaustive one.
    let guided = {
        let mut search = Search::new(&problem, Level::Guided, max_states);
        match search.run() {
            Outcome::Linearizable => return PartitionVerdict::Linearizable,
            Outcome::NotLinearizable if search.guided_rejections == 0 => {
                // The guidance never excluded anything: this was exhaustive.
                return PartitionVerdict::NotLinearizable {
                    explanation: explain::explain(&problem, &search.best_path()),
                };
            }
            Outcome::NotLinearizable => (
                search.explored,
                explain::explain(&problem, &search.best_path()),
            ),
            Outcome::Exhausted => return exhausted(&problem, &search, max_states, None),
        }
    };
    let mut search = Search::new(&problem, Level::Exhaustive, max_states);
    search.explored = guided.0;
    match search.run() {
        Outcome::Linearizable => PartitionVerdict::Linearizable,
        Outcome::NotLinearizable => PartitionVerdict::NotLinearizable {
            explanation: explain::explain(&problem, &search.best_path()),
        },
        Outcome::Exhausted => exhausted(&problem, &search, max_states, Some(&guided.1)),
    }
}

fn exhausted(
    problem: &Problem<'_>,
    search: &Search<'_, '_>,
    max_states: u64,
    guided: Option<&str>,
) -> PartitionVerdict {
    let mut reason = format!(
        "search budget exhausted on keys [{}] after exploring {} configurations \
         (max_states = {max_states}); at best {} of {} completed operations linearized, \
         with {} operations of unknown outcome that may take effect anywhere",
        explain::key_list(problem.keys),
        search.explored,
        search.best.0,
        problem.completed.len(),
        problem.unknown.len(),
    );
    if let Some(guided) = guided {
        reason.push_str(
            ".\nNo linearization exists in which every unknown-outcome operation that takes \
             effect does so right before a completed operation whose outcome it changes. \
             Likely culprit: ",
        );
        reason.push_str(guided);
    }
    PartitionVerdict::Exhausted { reason }
}

/// Why the partition cannot be searched, if an unknown-outcome operation may
/// have more than [`FORKS_MAX`] branches (a transaction appending to or
/// incrementing many keys that may expire).
fn too_many_forks(completed: &[Prepared<'_>], unknown: &[Prepared<'_>]) -> Option<String> {
    let sets_ttl = completed
        .iter()
        .chain(unknown)
        .any(|p| p.command.sets_ttl());
    let wide = unknown.iter().find(|p| p.command.forks_max() > FORKS_MAX)?;
    sets_ttl.then(|| {
        format!(
            "operation #{} has an unknown outcome and appends to or increments {} keys, \
             each of which may have expired or not; the checker explores the combinations \
             for at most {FORKS_MAX}: {}",
            wide.index,
            wide.command.forks_max(),
            explain::Describe(wide.operation)
        )
    })
}

fn internal_error(what: &str) -> PartitionVerdict {
    PartitionVerdict::Exhausted {
        reason: format!("internal error in the checker: {what}"),
    }
}

/// How unknown-outcome operations are tried.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    /// Only where one takes effect right before a completed operation that
    /// may go next and whose outcome it turns from wrong to right (a read
    /// that saw the unknown write, an append whose length counts it). This
    /// explains the usual correct history at the cost of a plain search; a
    /// failure proves nothing, since an unknown operation may also matter
    /// further away.
    Guided,
    /// Anywhere after their invocation: complete, and exponential in the
    /// number of unknown-outcome operations pending at a dead end.
    Exhaustive,
}

/// How a search ended.
enum Outcome {
    Linearizable,
    NotLinearizable,
    Exhausted,
}

/// Where the candidate scan stands.
#[derive(Clone, Copy)]
enum Cursor {
    /// At this entry of the completed list.
    Completed(u32),
    /// At this branch of this node of the unknown list; candidates must be
    /// invoked no later than `bound`, the earliest pending completion.
    Unknown { node: u32, bound: u64, branch: u32 },
}

/// A linearized operation on the stack, with what undoing it needs.
struct Frame {
    op: OpRef,
    /// The branch of `op` taken (see [`crate::command`]); 0 for a completed
    /// operation.
    branch: u32,
    prev_state: u32,
    prev_prefix: u32,
    /// The scan bound when an unknown operation was linearized.
    bound: u64,
    /// Its node in the path arena.
    node: u32,
}

/// A doubly linked list over `0..n` plus a head at index 0; removals and
/// restorations must be in LIFO order.
struct Links {
    next: Vec<u32>,
    prev: Vec<u32>,
}

impl Links {
    /// Head 0 followed by nodes `1..=n` in order.
    fn chain(n: usize) -> Links {
        let mut next: Vec<u32> = (1..=n as u32).collect();
        next.push(NIL);
        let prev = (0..=n as u32).map(|i| i.wrapping_sub(1)).collect();
        Links { next, prev }
    }

    fn first(&self) -> u32 {
        self.next[0]
    }

    fn remove(&mut self, node: u32) {
        let (prev, next) = (self.prev[node as usize], self.next[node as usize]);
        self.next[prev as usize] = next;
        if next != NIL {
            self.prev[next as usize] = prev;
        }
    }

    fn restore(&mut self, node: u32) {
        let (prev, next) = (self.prev[node as usize], self.next[node as usize]);
        self.next[prev as usize] = node;
        if next != NIL {
            self.prev[next as usize] = node;
        }
    }
}

struct Search<'p, 'h> {
    problem: &'p Problem<'h>,
    /// Call and return entries of completed operations, by time.
    entries: Links,
    /// For entry `e` (1-based), the operation and whether it is the return.
    entry_op: Vec<(u32, bool)>,
    /// For completed operation `c`, its call and return entries.
    op_entries: Vec<(u32, u32)>,
    /// Unknown operations by invocation; node `u + 1` is operation `u`.
    unknown_list: Links,
    /// First completed operation (completion order) not linearized.
    prefix: u32,
    /// Linearized completed operations after `prefix`, sorted.
    above: Vec<u32>,
    /// Linearized unknown operations, sorted.
    unknown_set: Vec<u32>,
    states: States,
    memo: Memo,
    state: u32,
    stack: Vec<Frame>,
    /// Completed operations not yet linearized.
    remaining: usize,
    explored: u64,
    max_states: u64,
    level: Level,
    /// Unknown operations the guided level declined to try.
    guided_rejections: u64,
    /// Path arena: (operation, branch, parent node); the root has parent
    /// [`NIL`].
    nodes: Vec<(OpRef, u32, u32)>,
    /// The best configuration reached (see [`Search::try_push`]):
    /// (completed operations linearized, path length, its node or [`NIL`]).
    best: (usize, usize, u32),
    /// Scratch for the memo key.
    key: Vec<u32>,
}

/// The result of trying to linearize one candidate.
enum Try {
    Pushed,
    Rejected,
    /// The operation has no such branch, nor any later one.
    NoSuchBranch,
    Exhausted,
}

impl<'p, 'h> Search<'p, 'h> {
    fn new(problem: &'p Problem<'h>, level: Level, max_states: u64) -> Search<'p, 'h> {
        let n = problem.completed.len();
        let mut events: Vec<(u64, bool, u32)> = Vec::with_capacity(2 * n);
        for (c, p) in problem.completed.iter().enumerate() {
            events.push((p.operation.invoke, false, c as u32));
            events.push((p.operation.complete, true, c as u32));
        }
        events.sort_unstable();
        let mut entry_op = Vec::with_capacity(2 * n + 1);
        entry_op.push((NIL, false));
        let mut op_entries = vec![(NIL, NIL); n];
        for (i, &(_, is_return, c)) in events.iter().enumerate() {
            let entry = i as u32 + 1;
            entry_op.push((c, is_return));
            let slot = &mut op_entries[c as usize];
            if is_return {
                slot.1 = entry;
            } else {
                slot.0 = entry;
            }
        }
        let mut states = States::default();
        let state = states.intern(problem.initial_state()).unwrap_or(0);
        Search {
            problem,
            entries: Links::chain(2 * n),
            entry_op,
            op_entries,
            unknown_list: Links::chain(problem.unknown.len()),
            prefix: 0,
            above: Vec::new(),
            unknown_set: Vec::new(),
            states,
            memo: Memo::default(),
            state,
            stack: Vec::new(),
            remaining: n,
            explored: 0,
            max_states,
            level,
            guided_rejections: 0,
            nodes: Vec::new(),
            best: (0, 0, NIL),
            key: Vec::new(),
        }
    }

    fn run(&mut self) -> Outcome {
        let mut cursor = Cursor::Completed(self.entries.first());
        loop {
            if self.remaining == 0 {
                return Outcome::Linearizable;
            }
            let candidate = match cursor {
                Cursor::Completed(entry) => {
                    let (op, is_return) = match self.entry_op.get(entry as usize) {
                        Some(&(op, is_return)) if entry != NIL => (op, is_return),
                        _ => (NIL, true),
                    };
                    if is_return {
                        let bound = if op == NIL {
                            u64::MAX
                        } else {
                            self.problem.completed[op as usize].operation.complete
                        };
                        cursor = Cursor::Unknown {
                            node: self.unknown_list.first(),
                            bound,
                            branch: 0,
                        };
                        continue;
                    }
                    Some((op, 0))
                }
                Cursor::Unknown {
                    node,
                    bound,
                    branch,
                } => {
                    let u = node.wrapping_sub(1);
                    match self.problem.unknown.get(u as usize) {
                        Some(p) if node != NIL && p.operation.invoke <= bound => {
                            Some((u | UNKNOWN, branch))
                        }
                        _ => None,
                    }
                }
            };
            match candidate {
                Some((op, branch)) => match self.try_push(op, branch, &cursor) {
                    Try::Pushed => cursor = Cursor::Completed(self.entries.first()),
                    Try::Rejected => cursor = self.advance(cursor),
                    Try::NoSuchBranch => cursor = self.next_operation(cursor),
                    Try::Exhausted => return Outcome::Exhausted,
                },
                None => {
                    let Some(frame) = self.stack.pop() else {
                        return Outcome::NotLinearizable;
                    };
                    cursor = self.pop(&frame);
                }
            }
        }
    }

    /// The cursor past its current candidate: the next branch of an
    /// unknown-outcome operation, the next operation otherwise.
    fn advance(&self, cursor: Cursor) -> Cursor {
        match cursor {
            Cursor::Unknown {
                node,
                bound,
                branch,
            } if self.may_fork(node) => Cursor::Unknown {
                node,
                bound,
                branch: branch + 1,
            },
            Cursor::Completed(_) | Cursor::Unknown { .. } => self.next_operation(cursor),
        }
    }

    /// Whether the unknown-outcome operation at `node` of the unknown list
    /// may have another branch.
    fn may_fork(&self, node: u32) -> bool {
        let u = node.wrapping_sub(1) as usize;
        self.problem.unknown.get(u).is_some_and(|p| p.may_fork)
    }

    /// The cursor at the next operation's first branch.
    fn next_operation(&self, cursor: Cursor) -> Cursor {
        match cursor {
            Cursor::Completed(entry) => Cursor::Completed(self.entries.next[entry as usize]),
            Cursor::Unknown { node, bound, .. } => Cursor::Unknown {
                node: self.unknown_list.next[node as usize],
                bound,
                branch: 0,
            },
        }
    }

    fn try_push(&mut self, op: OpRef, branch: u32, cursor: &Cursor) -> Try {
        let prepared = self.problem.get(op);
        let state = self.states.get(self.state);
        let new_state = match prepared
            .command
            .run(state, &prepared.operation.outcome, branch)
        {
            Run::Mismatch => return Try::Rejected,
            Run::NoSuchBranch => return Try::NoSuchBranch,
            Run::Same => self.state,
            Run::Changed(next) => match self.states.intern(next) {
                Some(id) => id,
                None => return Try::Exhausted,
            },
        };
        if op & UNKNOWN != 0 {
            if self.overwrites_top(prepared, new_state) {
                return Try::Rejected;
            }
            if self.level == Level::Guided && !self.enables_a_candidate(new_state) {
                self.guided_rejections += 1;
                return Try::Rejected;
            }
        }
        let prev_prefix = self.prefix;
        self.insert(op);
        self.key.clear();
        self.key.push(new_state);
        self.key.push(self.prefix);
        self.key.extend_from_slice(&self.above);
        if !self.memo.insert(&self.key, &self.unknown_set) {
            self.remove(op, prev_prefix);
            return Try::Rejected;
        }
        self.explored += 1;
        if self.explored > self.max_states || self.nodes.len() >= NIL as usize {
            return Try::Exhausted;
        }
        self.lift(op);
        let parent = self.stack.last().map_or(NIL, |frame| frame.node);
        let node = self.nodes.len() as u32;
        self.nodes.push((op, branch, parent));
        let bound = match cursor {
            Cursor::Unknown { bound, .. } => *bound,
            Cursor::Completed(_) => 0,
        };
        self.stack.push(Frame {
            op,
            branch,
            prev_state: self.state,
            prev_prefix,
            bound,
            node,
        });
        self.state = new_state;
        // The most completed operations, then the fewest unknown ones: those
        // are optional, and a shorter prefix is easier to read.
        let completed = self.problem.completed.len() - self.remaining;
        let depth = self.stack.len();
        if (completed, Reverse(depth)) > (self.best.0, Reverse(self.best.1)) || self.best.2 == NIL {
            self.best = (completed, depth, node);
        }
        Try::Pushed
    }

    /// Whether linearizing the unknown operation `prepared` (giving
    /// `new_state`) right after the unknown operation on top of the stack
    /// gives the state it would give without that one, as a blind write
    /// overwriting another does.
    ///
    /// If so, the configuration is dominated by the one the parent reaches by
    /// linearizing `prepared` directly (same completed operations and state,
    /// fewer unknown ones), which the parent explores anyway: either it did
    /// already (the memo would catch this one) or it will, when its scan gets
    /// to `prepared`. Without this, a run of `n` unknown writes that nobody
    /// observed makes the search try on the order of `2^n` subsets of them.
    fn overwrites_top(&self, prepared: &Prepared<'_>, new_state: u32) -> bool {
        let Some(top) = self.stack.last() else {
            return false;
        };
        if top.op & UNKNOWN == 0 {
            return false;
        }
        let before = self.states.get(top.prev_state);
        let after = self.states.get(new_state);
        // Any branch will do: the parent tries them all.
        let branches = if prepared.may_fork {
            1u32 << FORKS_MAX
        } else {
            1
        };
        for branch in 0..branches {
            let same = match prepared
                .command
                .run(before, &crate::Outcome::Unknown, branch)
            {
                Run::NoSuchBranch => return false,
                Run::Mismatch => false,
                Run::Same => before == after,
                Run::Changed(state) => state == *after,
            };
            if same {
                return true;
            }
        }
        false
    }

    /// Whether some completed operation that may go next has an outcome
    /// that is wrong in the current state but right in `new_state`.
    fn enables_a_candidate(&self, new_state: u32) -> bool {
        let now = self.states.get(self.state);
        let then = self.states.get(new_state);
        let mut entry = self.entries.first();
        while let Some(&(c, false)) = self.entry_op.get(entry as usize) {
            let prepared = &self.problem.completed[c as usize];
            let observed = &prepared.operation.outcome;
            if matches!(
                prepared.command.run(then, observed, 0),
                Run::Same | Run::Changed(_)
            ) && matches!(prepared.command.run(now, observed, 0), Run::Mismatch)
            {
                return true;
            }
            entry = self.entries.next[entry as usize];
        }
        false
    }

    /// Undoes `frame` and returns the cursor just past its operation's
    /// branch.
    fn pop(&mut self, frame: &Frame) -> Cursor {
        self.unlift(frame.op);
        self.remove(frame.op, frame.prev_prefix);
        self.state = frame.prev_state;
        if frame.op & UNKNOWN != 0 {
            self.advance(Cursor::Unknown {
                node: (frame.op & !UNKNOWN) + 1,
                bound: frame.bound,
                branch: frame.branch,
            })
        } else {
            let (call, _) = self.op_entries[frame.op as usize];
            Cursor::Completed(self.entries.next[call as usize])
        }
    }

    /// Adds `op` to the linearized set.
    fn insert(&mut self, op: OpRef) {
        if op & UNKNOWN != 0 {
            let u = op & !UNKNOWN;
            if let Err(at) = self.unknown_set.binary_search(&u) {
                self.unknown_set.insert(at, u);
            }
        } else if op == self.prefix {
            self.prefix += 1;
            let run = self
                .above
                .iter()
                .zip(self.prefix..)
                .take_while(|(linearized, expected)| **linearized == *expected)
                .count();
            self.above.drain(..run);
            self.prefix += run as u32;
        } else if let Err(at) = self.above.binary_search(&op) {
            self.above.insert(at, op);
        }
    }

    /// Removes `op`, the operation inserted last, from the linearized set;
    /// `prev_prefix` is the prefix before it was inserted.
    fn remove(&mut self, op: OpRef, prev_prefix: u32) {
        if op & UNKNOWN != 0 {
            if let Ok(at) = self.unknown_set.binary_search(&(op & !UNKNOWN)) {
                self.unknown_set.remove(at);
            }
        } else if op == prev_prefix {
            // Inserting it advanced the prefix over a run of `above`.
            self.above.splice(0..0, prev_prefix + 1..self.prefix);
            self.prefix = prev_prefix;
        } else if let Ok(at) = self.above.binary_search(&op) {
            self.above.remove(at);
        }
    }

    fn lift(&mut self, op: OpRef) {
        if op & UNKNOWN != 0 {
            self.unknown_list.remove((op & !UNKNOWN) + 1);
        } else {
            let (call, ret) = self.op_entries[op as usize];
            self.entries.remove(call);
            self.entries.remove(ret);
            self.remaining -= 1;
        }
    }

    fn unlift(&mut self, op: OpRef) {
        if op & UNKNOWN != 0 {
            self.unknown_list.restore((op & !UNKNOWN) + 1);
        } else {
            let (call, ret) = self.op_entries[op as usize];
            self.entries.restore(ret);
            self.entries.restore(call);
            self.remaining += 1;
        }
    }

    /// The operations of the deepest configuration reached, in order, with
    /// the branch each took.
    fn best_path(&self) -> Vec<(OpRef, u32)> {
        let mut path = Vec::new();
        let mut node = self.best.2;
        while let Some(&(op, branch, parent)) = self.nodes.get(node as usize) {
            path.push((op, branch));
            node = parent;
        }
        path.reverse();
        path
    }
}
