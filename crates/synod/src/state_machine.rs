//! What a user replicates: a deterministic state machine.

use bytes::Bytes;
use synod_core::InstanceId;

/// Where in the log a command or read takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyContext {
    /// The instance whose value holds the command.
    pub instance: InstanceId,
    /// The log clock: milliseconds since the Unix epoch, stamped by the
    /// proposing node (within the bound of [`crate::StampClock`]) and made
    /// monotonic along the log (the maximum of every stamp so far). Every
    /// replica sees the same value for the same command, so a state machine
    /// uses this, never its own clock, for anything time-dependent (expiry).
    /// A read is given the log clock at the point of the log it is answered
    /// at, never the serving node's clock.
    pub time_ms: u64,
    /// The command's place in its instance's value: 0 for the value's first
    /// command, counting every command the value holds (reads, retries
    /// applied once already and undecodable ones included). The leader puts
    /// many clients' commands into one value, where they share `instance`
    /// and often `time_ms`: a state machine that draws random numbers seeds
    /// them with this too, or concurrent commands draw alike. A function of
    /// the log alone, like the fields above: the same on every replica and
    /// on every replay (after a restart, a snapshot install or catch-up),
    /// however the runtime cuts the value into
    /// [`StateMachine::apply_batch`] calls. A read answered off the log (by
    /// read index or lease) has no place in a value: 0.
    pub index: u32,
}

/// One command of a batch given to [`StateMachine::apply_batch`].
#[derive(Clone, Copy, Debug)]
pub struct BatchCommand<'a> {
    /// The command, as proposed: a slice of the log value that carried it
    /// (no copy). A state machine may take zero-copy slices of it
    /// (`Bytes::slice_ref`) for what it reads during the apply; a slice it
    /// *keeps* keeps the whole log value (a batch of many commands) in
    /// memory, so what outlives the apply should be copied (or be a slice
    /// of a short value that is copied right after).
    pub command: &'a Bytes,
    /// Where it takes effect (the commands of a batch share an instance;
    /// their log clocks may differ; their indexes do).
    pub ctx: ApplyContext,
}

/// A state machine snapshot encoding deferred to another thread (see
/// [`StateMachine::snapshot_view`]).
pub type SnapshotJob = Box<dyn FnOnce() -> Bytes + Send>;

/// A state machine snapshot written piece by piece, on another thread,
/// straight into the snapshot file (see [`StateMachine::snapshot_stream`]).
pub type SnapshotStream = Box<dyn FnOnce(&mut dyn std::io::Write) -> std::io::Result<()> + Send>;

/// Makes an on-disk state machine's state durable, on another thread (see
/// [`StateMachine::sync`]).
pub type StateSyncJob = Box<dyn FnOnce() -> std::io::Result<()> + Send>;

/// A read answered on another thread (see [`StateMachine::query_view`]).
pub type QueryJob = Box<dyn FnOnce() -> Bytes + Send>;

/// How [`StateMachine::serve_query`] serves a read.
#[non_exhaustive]
pub enum Served {
    /// Its answer depends on the time: the runtime sends it through the log
    /// and answers it when it is applied (unless it settles by the clock:
    /// [`StateMachine::query_settles_by_clock`]).
    ThroughLog,
    /// Answered off the event loop by this job (see
    /// [`StateMachine::query_view`]).
    OffLoop(QueryJob),
    /// The answer, given on the event loop.
    Answer(Bytes),
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Served::ThroughLog => f.write_str("ThroughLog"),
            Served::OffLoop(_) => f.write_str("OffLoop(..)"),
            Served::Answer(output) => f.debug_tuple("Answer").field(output).finish(),
        }
    }
}

/// A deterministic state machine replicated by a [`crate::Node`].
///
/// Commands, reads and outputs are opaque bytes: encode them as you like.
/// `apply` must be a pure function of (state, command, context): every replica
/// applies the same commands in the same order and must reach the same state.
pub trait StateMachine: Send + 'static {
    /// Applies one replicated command and returns its output. Runs on every
    /// replica; the output is returned to the proposer.
    fn apply(&mut self, command: &[u8], ctx: &ApplyContext) -> Bytes;

    /// Applies several replicated commands in order, as if by one `apply`
    /// each, and returns their outputs in the same order (exactly one per
    /// command). The runtime hands over, at once, the commands of one
    /// chosen instance that no read falls between, so a state machine can
    /// share work across them: one storage transaction or one write-ahead
    /// record for the whole batch, one lock, one decode of shared data.
    ///
    /// It must leave the same state and return the same outputs as applying
    /// the commands one at a time would: replicas may receive the same
    /// commands in batches cut differently (after a restart, or through
    /// catch-up). Returning another number of outputs is a bug in the state
    /// machine: the node stops, as on a panic in `apply`.
    ///
    /// The default calls [`StateMachine::apply`] for each command.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use synod::{ApplyContext, BatchCommand, StateMachine};
    ///
    /// /// A counter that adds up a batch before touching its state.
    /// struct Counter(u64);
    ///
    /// impl StateMachine for Counter {
    ///     fn apply(&mut self, command: &[u8], _: &ApplyContext) -> Bytes {
    ///         self.0 += command.len() as u64;
    ///         Bytes::from(self.0.to_string())
    ///     }
    ///     fn apply_batch(&mut self, batch: &[BatchCommand<'_>]) -> Vec<Bytes> {
    ///         let mut total = self.0;
    ///         let outputs = batch
    ///             .iter()
    ///             .map(|c| {
    ///                 total += c.command.len() as u64;
    ///                 Bytes::from(total.to_string())
    ///             })
    ///             .collect();
    ///         self.0 = total;
    ///         outputs
    ///     }
    ///     fn query(&self, _: &[u8], _: &ApplyContext) -> Bytes {
    ///         Bytes::from(self.0.to_string())
    ///     }
    ///     fn snapshot(&self) -> Bytes {
    ///         Bytes::copy_from_slice(&self.0.to_le_bytes())
    ///     }
    ///     fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
    ///         let bytes = snapshot.try_into().map_err(|_| "not 8 bytes")?;
    ///         self.0 = u64::from_le_bytes(bytes);
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let ctx = |index| ApplyContext { instance: synod::InstanceId(1), time_ms: 0, index };
    /// let batch = [
    ///     BatchCommand { command: &Bytes::from_static(b"ab"), ctx: ctx(0) },
    ///     BatchCommand { command: &Bytes::from_static(b"c"), ctx: ctx(1) },
    /// ];
    /// let mut counter = Counter(0);
    /// assert_eq!(counter.apply_batch(&batch), vec![Bytes::from("2"), Bytes::from("3")]);
    /// ```
    fn apply_batch(&mut self, batch: &[BatchCommand<'_>]) -> Vec<Bytes> {
        batch
            .iter()
            .map(|one| self.apply(one.command, &one.ctx))
            .collect()
    }

    /// Answers a linearizable read at its point in the log. Runs only on the
    /// node that asked; it must not change the state.
    fn query(&self, query: &[u8], ctx: &ApplyContext) -> Bytes;

    /// Whether `query`'s answer in the current state depends on
    /// `ctx.time_ms` (for a key-value store: it reads a key that expires).
    ///
    /// A read is answered by read index, without a log instance, when this
    /// is `false`; its context then carries the log clock of the last applied
    /// command, which does not advance while no command is applied. When
    /// `true`, the read goes through the log like a command and is answered
    /// when it is applied, at the log clock its own stamp advanced: time
    /// moves for it, and every replica agrees on what time it is (unless
    /// [`StateMachine::query_settles_by_clock`] lets it settle by the clock).
    ///
    /// The default, `false`, is right for a state machine whose queries
    /// ignore the time. Answering `false` for a time-dependent read is still
    /// linearizable, but the read sees the time of the latest command, however
    /// old (a key would not expire until the next write).
    fn query_depends_on_time(&self, query: &[u8]) -> bool {
        let _ = query;
        false
    }

    /// Whether a read whose answer depends on the time
    /// ([`StateMachine::query_depends_on_time`]) may still be answered
    /// without the log, at the log clock of the point it is served at (`ctx`,
    /// as [`StateMachine::serve_query`] gets it),
    /// whenever [`StateMachine::query`] gives the same answer there and at
    /// the time this node would stamp a command with now (a GET of a key
    /// whose TTL has not run out, by either time). Such an answer is
    /// linearizable at that point, as every read by read index is; the
    /// clock only decides whether the log is needed, so a key still reads
    /// as gone once this node's clock passes its expiry.
    ///
    /// `true` only for a read tied to its place in the log by the time
    /// alone, and cheap enough to answer twice on the event loop: not for
    /// one that draws randomness from [`ApplyContext::instance`] or
    /// [`ApplyContext::index`] (answered off the log it would draw alike
    /// each time), nor for one [`StateMachine::query_view`] answers off the
    /// loop. The runtime calls `query` twice for it (at both times) and
    /// compares the bytes. The default, `false`, sends every such read
    /// through the log.
    fn query_settles_by_clock(&self, query: &[u8], ctx: &ApplyContext) -> bool {
        let _ = (query, ctx);
        false
    }

    /// Serves a linearizable read confirmed by read index (or a lease), in
    /// one call: [`Served::ThroughLog`] when
    /// [`StateMachine::query_depends_on_time`] says its answer depends on the
    /// time, else [`Served::OffLoop`] with [`StateMachine::query_view`]'s job
    /// when there is one, else [`Served::Answer`] with
    /// [`StateMachine::query`]'s output. The default calls those three in
    /// that order; a state machine that decodes its queries can override it
    /// to decode each once. It must serve exactly as the default would.
    ///
    /// Every read confirmed by read index or a lease comes here, and only
    /// those: a read sent through the log, a stale read
    /// (`Node::read_stale`) and the answers of reads applied as commands call
    /// [`StateMachine::query_view`] and [`StateMachine::query`] directly, so
    /// an override must agree with those two. Whether a read goes through
    /// the log must follow from the state alone, never from `ctx.time_ms`:
    /// that is the log clock of the last applied command, which stands still
    /// while nothing is applied.
    fn serve_query(&self, query: &[u8], ctx: &ApplyContext) -> Served {
        if self.query_depends_on_time(query) {
            return Served::ThroughLog;
        }
        match self.query_view(query, ctx) {
            Some(job) => Served::OffLoop(job),
            None => Served::Answer(self.query(query, ctx)),
        }
    }

    /// A hint: the runtime is about to serve the reads `queries`, in this
    /// order, with nothing applied in between: for each it calls
    /// [`StateMachine::serve_query`], which answers it here or sends it
    /// through the log. A state machine whose reads wait on memory can ask
    /// the CPU to fetch what they will read, so that the lookups overlap
    /// their cache misses instead of taking them one after another. The
    /// runtime calls it with 2 to [`crate::engine::QUERY_PREFETCH_GROUP`]
    /// queries at a time, so that what was fetched is still cached when
    /// each is served. It must change nothing that any query returns.
    ///
    /// The default does nothing.
    fn prefetch_queries(&self, queries: &[&[u8]]) {
        let _ = queries;
    }

    /// The whole state, to be given back to `restore` (on a restart, or on a
    /// replica that lags behind a compacted log).
    fn snapshot(&self) -> Bytes;

    /// The whole state as [`StateMachine::snapshot`] would encode it now,
    /// but encoded later, on another thread: a consistent view taken
    /// cheaply now (for example by cloning persistent, copy-on-write
    /// structures) and a job that encodes it. The job's output must be
    /// exactly what `snapshot` returns at the moment of this call, whatever
    /// `apply` does meanwhile.
    ///
    /// The runtime takes snapshots on its event loop, which also sends
    /// heartbeats and serves every client: a state machine whose encoding
    /// costs more than a few milliseconds should implement this, or the
    /// encoding delays them all (and can cost an election). The default,
    /// `None`, makes the runtime call `snapshot` on the loop.
    fn snapshot_view(&self) -> Option<SnapshotJob> {
        None
    }

    /// The whole state as [`StateMachine::snapshot`] would encode it now,
    /// written later, on another thread, piece by piece into the snapshot
    /// file: a consistent view taken cheaply now (as for
    /// [`StateMachine::snapshot_view`]) and a job that writes its encoding to
    /// the writer it is given. The encoding is never held whole in memory,
    /// so a state as large as the disk can be snapshotted: the form to
    /// implement for big state. The bytes written must be exactly what
    /// `snapshot` returns at the moment of this call, whatever `apply` does
    /// meanwhile; they are given back to [`StateMachine::restore`].
    ///
    /// The writer buffers (about 1 MiB per write to the file), so small
    /// writes are cheap. An error returned by the job, or by the writer, is
    /// a failed snapshot write: the node stops, as on a failed fsync.
    ///
    /// Preferred over `snapshot_view` when both are implemented. The
    /// default, `None`, leaves the choice to `snapshot_view`.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use std::sync::Arc;
    /// use synod::{ApplyContext, SnapshotStream, StateMachine};
    ///
    /// /// Named blobs, shared with a snapshot in progress (copy-on-write).
    /// #[derive(Default)]
    /// struct Blobs(Arc<Vec<Bytes>>);
    ///
    /// impl StateMachine for Blobs {
    ///     fn apply(&mut self, command: &[u8], _: &ApplyContext) -> Bytes {
    ///         Arc::make_mut(&mut self.0).push(Bytes::copy_from_slice(command));
    ///         Bytes::new()
    ///     }
    ///     fn query(&self, _: &[u8], _: &ApplyContext) -> Bytes {
    ///         Bytes::from(self.0.len().to_string())
    ///     }
    ///     fn snapshot(&self) -> Bytes {
    ///         let mut out = Vec::new();
    ///         encode(&self.0, &mut out).expect("a Vec takes every write");
    ///         Bytes::from(out)
    ///     }
    ///     fn snapshot_stream(&self) -> Option<SnapshotStream> {
    ///         let view = Arc::clone(&self.0);
    ///         Some(Box::new(move |out: &mut dyn std::io::Write| encode(&view, out)))
    ///     }
    ///     fn restore(&mut self, mut snapshot: &[u8]) -> Result<(), String> {
    ///         let mut blobs = Vec::new();
    ///         while !snapshot.is_empty() {
    ///             let (len, rest) = snapshot.split_at_checked(4).ok_or("truncated")?;
    ///             let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
    ///             let (blob, rest) = rest.split_at_checked(len).ok_or("truncated")?;
    ///             blobs.push(Bytes::copy_from_slice(blob));
    ///             snapshot = rest;
    ///         }
    ///         self.0 = Arc::new(blobs);
    ///         Ok(())
    ///     }
    /// }
    ///
    /// /// Length-prefixed blobs, one after another.
    /// fn encode(blobs: &[Bytes], out: &mut dyn std::io::Write) -> std::io::Result<()> {
    ///     for blob in blobs {
    ///         out.write_all(&(blob.len() as u32).to_le_bytes())?;
    ///         out.write_all(blob)?;
    ///     }
    ///     Ok(())
    /// }
    ///
    /// let mut blobs = Blobs::default();
    /// let ctx = ApplyContext { instance: synod::InstanceId(1), time_ms: 0, index: 0 };
    /// blobs.apply(b"one", &ctx);
    /// let stream = blobs.snapshot_stream().expect("streams");
    /// blobs.apply(b"two", &ctx); // after the view: not in this snapshot
    /// let mut file = Vec::new();
    /// stream(&mut file).expect("written");
    /// let mut restored = Blobs::default();
    /// restored.restore(&file).expect("restores");
    /// assert_eq!(restored.0.len(), 1);
    /// ```
    fn snapshot_stream(&self) -> Option<SnapshotStream> {
        None
    }

    /// A read whose answer costs time that grows with the state (a scan of
    /// every key), to be answered off the event loop: a consistent view
    /// taken cheaply now and a job that answers `query` from it. The job's
    /// output must be exactly what `query(query, ctx)` returns now.
    /// `None` (the default) means: answer it with `query`, on the loop.
    fn query_view(&self, query: &[u8], ctx: &ApplyContext) -> Option<QueryJob> {
        let _ = (query, ctx);
        None
    }

    /// Replaces the state with one produced by `snapshot` (or written by
    /// `snapshot_stream`).
    ///
    /// The slice is usually a read-only mapping of the snapshot file, not a
    /// copy on the heap: its pages are read from disk as they are touched
    /// and the kernel may reclaim them. A state machine that decodes from it
    /// piece by piece (`&[u8]` implements `std::io::Read`) holds one copy of
    /// its state, however large the snapshot.
    ///
    /// At start it runs before the node serves. A peer's snapshot (this
    /// replica lagged behind the compacted log) is restored on another
    /// thread, the state machine moved there: meanwhile the node votes,
    /// accepts and sends heartbeats as usual, applies nothing (the values
    /// chosen meanwhile wait, in order) and holds reads until it is back.
    /// An error (or a panic) stops the node: a snapshot whose digest
    /// matched is one a peer wrote, so refusing it is a bug.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;

    /// **On-disk mode.** `Some(point)` says that this state machine keeps
    /// its state on its own disk (a database, files of its own) rather than
    /// in memory: what survives a crash there is exactly the state after
    /// applying every command of the instances before `point`, and none
    /// after. A store with nothing in it yet reports `Some(InstanceId(0))`.
    /// The default, `None`, is the in-memory mode: the runtime restores the
    /// state from its latest snapshot at every start. The mode is read once,
    /// at start: a state machine must answer `Some` or `None` for good.
    ///
    /// In on-disk mode:
    /// - **A restart restores nothing** when the state machine's durable
    ///   state is at or past the latest checkpoint: the runtime replays the
    ///   log from the checkpoint, skipping `apply` for the instances before
    ///   `point` (the state has them already). The session table still
    ///   learns of those commands, but not their outputs: a client that
    ///   retries one of them gets
    ///   [`RequestError::OutputNotKept`](crate::RequestError::OutputNotKept),
    ///   never a second application. Stale reads wait until the replay
    ///   reaches `point`.
    /// - **A checkpoint writes no copy of the state**: the runtime calls
    ///   [`StateMachine::sync`], runs its job off the event loop, checks
    ///   that `durable_end` reached the checkpoint's point, then writes a
    ///   checkpoint holding only its own session table and compacts the log
    ///   there. A whole snapshot (`snapshot_stream`, `snapshot_view` or
    ///   `snapshot`) is written only when a peer needs one to catch up (it
    ///   lags behind the compacted log), and checkpoints stay whole for a
    ///   minute after the last such need, so the transfer is not cut by the
    ///   next one (`sync` runs before those too).
    /// - **`restore` may replace the durable state** (a lagging replica
    ///   installs a peer's snapshot): the runtime starts it only once that
    ///   snapshot is durable as this node's checkpoint, and keeps it so
    ///   until the next `sync`. Meanwhile `durable_end` must never report a
    ///   point whose state the store no longer holds: report
    ///   `Some(InstanceId(0))` (or any point up to the snapshot's) from the
    ///   moment the old state starts to go until the next `sync` succeeds.
    ///
    /// **The point must be exact at start**: record it in the same atomic
    /// write as the state it describes. Two ways are right: write the
    /// commands of each instance and its `end` together, in
    /// [`StateMachine::applied_through`] (a write batch per instance, or
    /// per several, with the last `end`); or write a consistent view taken
    /// in [`StateMachine::sync`] (a database snapshot or checkpoint) together
    /// with its `through`. Wrong: flushing the live store in `sync`'s job and
    /// recording `through` with it, since the store then holds commands
    /// applied after `through` that a restart would apply a second time; and
    /// recording `ctx.instance` of a command, since an instance may hold
    /// more commands, applied in a later batch. After a `sync` job, a point
    /// at or past `through` is all the runtime checks. A start whose state
    /// machine reports a point before a checkpoint that holds no copy of the
    /// state fails with a clear error (its files were lost or replaced):
    /// nothing is guessed.
    fn durable_end(&self) -> Option<InstanceId> {
        None
    }

    /// **On-disk mode** (see [`StateMachine::durable_end`]): every command
    /// of the instances before `through` is applied; return a job that makes
    /// this state (and no later one) durable, so that `durable_end` then
    /// reports `through` or later. The call runs on the event loop, between
    /// applies: take a consistent view here, cheaply (a database snapshot),
    /// and write it in the job, which runs on another thread while `apply`,
    /// `applied_through` and even `restore` go on. The job must write the
    /// view it took, and must not record its point over a store that a
    /// `restore` replaced meanwhile. `None`: the state is durable through
    /// `through` already (a store that writes every instance through, with
    /// its point, in `applied_through`). An error from the job is a failed
    /// checkpoint: the node stops, as on a failed fsync.
    fn sync(&mut self, through: InstanceId) -> Option<StateSyncJob> {
        let _ = through;
        None
    }

    /// Every command of the instances before `end` is applied (called after
    /// each applied instance, whether or not it held commands; not for the
    /// instances a restart skips, see [`StateMachine::durable_end`]). An
    /// on-disk state machine that writes through as it applies may make its
    /// state durable here, with `end` as its point. The default does
    /// nothing.
    fn applied_through(&mut self, end: InstanceId) {
        let _ = end;
    }

    /// A digest of the whole state, equal on every replica that applied the
    /// same commands (a pure function of the state: no addresses, no
    /// iteration order of a randomly seeded map). Replicas compare digests
    /// taken at the same point in the log, and a mismatch is reported as
    /// divergence, like a mismatch of the applied log checksum: it catches a
    /// state machine that is not deterministic. Called after every batch of
    /// applied commands, so it must be cheap (keep it up to date as `apply`
    /// changes the state). The default, `None`, compares nothing.
    fn digest(&self) -> Option<u64> {
        None
    }
}

/// A boxed state machine is one: every call goes to the box's contents, the
/// provided methods too (the contents' own versions, never the defaults).
/// [`crate::Node::start`] boxes the state machine it is given, so that the
/// runtime (driver, engine, persistence) is compiled once, in this crate,
/// rather than again for every state machine type: each example and test
/// binary compiled the whole runtime at about 30 CPU-seconds apiece. The
/// cost is one indirect call per batch, query or snapshot.
impl StateMachine for Box<dyn StateMachine> {
    fn apply(&mut self, command: &[u8], ctx: &ApplyContext) -> Bytes {
        (**self).apply(command, ctx)
    }

    fn apply_batch(&mut self, batch: &[BatchCommand<'_>]) -> Vec<Bytes> {
        (**self).apply_batch(batch)
    }

    fn query(&self, query: &[u8], ctx: &ApplyContext) -> Bytes {
        (**self).query(query, ctx)
    }

    fn query_depends_on_time(&self, query: &[u8]) -> bool {
        (**self).query_depends_on_time(query)
    }

    fn query_settles_by_clock(&self, query: &[u8], ctx: &ApplyContext) -> bool {
        (**self).query_settles_by_clock(query, ctx)
    }

    fn prefetch_queries(&self, queries: &[&[u8]]) {
        (**self).prefetch_queries(queries)
    }

    fn serve_query(&self, query: &[u8], ctx: &ApplyContext) -> Served {
        (**self).serve_query(query, ctx)
    }

    fn snapshot(&self) -> Bytes {
        (**self).snapshot()
    }

    fn snapshot_view(&self) -> Option<SnapshotJob> {
        (**self).snapshot_view()
    }

    fn snapshot_stream(&self) -> Option<SnapshotStream> {
        (**self).snapshot_stream()
    }

    fn query_view(&self, query: &[u8], ctx: &ApplyContext) -> Option<QueryJob> {
        (**self).query_view(query, ctx)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        (**self).restore(snapshot)
    }

    fn durable_end(&self) -> Option<InstanceId> {
        (**self).durable_end()
    }

    fn sync(&mut self, through: InstanceId) -> Option<StateSyncJob> {
        (**self).sync(through)
    }

    fn applied_through(&mut self, end: InstanceId) {
        (**self).applied_through(end)
    }

    fn digest(&self) -> Option<u64> {
        (**self).digest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Overrides every method with an answer the defaults never give;
    /// `applied_through` and `prefetch_queries`, which return nothing,
    /// show in `digest`.
    #[derive(Default)]
    struct Every {
        applied_through: u64,
        prefetched: std::cell::Cell<u64>,
    }

    impl StateMachine for Every {
        fn apply(&mut self, _: &[u8], _: &ApplyContext) -> Bytes {
            Bytes::from_static(b"apply")
        }
        fn apply_batch(&mut self, batch: &[BatchCommand<'_>]) -> Vec<Bytes> {
            vec![Bytes::from_static(b"batch"); batch.len()]
        }
        fn query(&self, _: &[u8], _: &ApplyContext) -> Bytes {
            Bytes::from_static(b"query")
        }
        fn query_depends_on_time(&self, _: &[u8]) -> bool {
            true
        }
        fn query_settles_by_clock(&self, _: &[u8], _: &ApplyContext) -> bool {
            true
        }
        fn prefetch_queries(&self, queries: &[&[u8]]) {
            self.prefetched
                .set(self.prefetched.get() + queries.len() as u64);
        }
        // Breaks the rule "serve as the default would" on purpose: the
        // default would answer `ThroughLog` (`query_depends_on_time`), so
        // this answer shows the box forwarded the call.
        fn serve_query(&self, _: &[u8], _: &ApplyContext) -> Served {
            Served::Answer(Bytes::from_static(b"served"))
        }
        fn snapshot(&self) -> Bytes {
            Bytes::from_static(b"snapshot")
        }
        fn snapshot_view(&self) -> Option<SnapshotJob> {
            Some(Box::new(|| Bytes::from_static(b"view")))
        }
        fn snapshot_stream(&self) -> Option<SnapshotStream> {
            Some(Box::new(|out| out.write_all(b"stream")))
        }
        fn query_view(&self, _: &[u8], _: &ApplyContext) -> Option<QueryJob> {
            Some(Box::new(|| Bytes::from_static(b"query view")))
        }
        fn restore(&mut self, _: &[u8]) -> Result<(), String> {
            Err("restore".into())
        }
        fn durable_end(&self) -> Option<InstanceId> {
            Some(InstanceId(7))
        }
        fn sync(&mut self, _: InstanceId) -> Option<StateSyncJob> {
            Some(Box::new(|| Err(std::io::Error::other("sync"))))
        }
        fn applied_through(&mut self, end: InstanceId) {
            self.applied_through = end.0;
        }
        fn digest(&self) -> Option<u64> {
            Some(9 + self.applied_through + 100 * self.prefetched.get())
        }
    }

    #[test]
    fn a_boxed_state_machine_answers_as_its_contents() {
        let ctx = ApplyContext {
            instance: InstanceId(1),
            time_ms: 0,
            index: 0,
        };
        let mut boxed: Box<dyn StateMachine> = Box::new(Every::default());
        // Through the trait, as the runtime calls it (not Box's deref).
        fn as_sm<S: StateMachine>(sm: &mut S) -> &mut S {
            sm
        }
        let sm = as_sm(&mut boxed);
        assert_eq!(sm.apply(b"", &ctx), "apply");
        let command = Bytes::from_static(b"c");
        let batch = [BatchCommand {
            command: &command,
            ctx,
        }];
        assert_eq!(sm.apply_batch(&batch), vec![Bytes::from_static(b"batch")]);
        assert_eq!(sm.query(b"", &ctx), "query");
        assert!(sm.query_depends_on_time(b""));
        assert!(sm.query_settles_by_clock(b"", &ctx));
        // The default would send it through the log (`query_depends_on_time`).
        assert!(matches!(sm.serve_query(b"", &ctx), Served::Answer(a) if a == "served"));
        assert_eq!(sm.snapshot(), "snapshot");
        assert_eq!(sm.snapshot_view().expect("a view")(), "view");
        let mut out = Vec::new();
        sm.snapshot_stream().expect("a stream")(&mut out).expect("written");
        assert_eq!(out, b"stream");
        assert_eq!(sm.query_view(b"", &ctx).expect("a view")(), "query view");
        assert_eq!(sm.restore(b""), Err("restore".to_string()));
        assert_eq!(sm.durable_end(), Some(InstanceId(7)));
        assert!(sm.sync(InstanceId(3)).expect("a job")().is_err());
        assert_eq!(sm.digest(), Some(9));
        sm.applied_through(InstanceId(5));
        assert_eq!(sm.digest(), Some(14));
        sm.prefetch_queries(&[b"a", b"b"]);
        assert_eq!(sm.digest(), Some(214));
    }
}
