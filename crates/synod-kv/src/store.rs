//! [`Store`]: the key-value state machine replicated by Synod.

use bytes::Bytes;
use std::sync::{Arc, Mutex, MutexGuard};
use synod::{
    ApplyContext, BatchCommand, InstanceId, QueryJob, Served, SnapshotJob, SnapshotStream,
    StateMachine, StateSyncJob,
};
use synod_resp::Reply;

use crate::acl_auth::Acl;
use crate::command::KvCommand;
use crate::keyspace::Keyspace;
use crate::ops;
use crate::reply_codec::encode_reply;
use crate::snapshot;
use crate::trie::PREFETCH_GROUP_MAX;

/// Most expired keys one `apply` removes from the front of the expiry
/// index, besides any key the command itself touches. Bounds the work a
/// single command can trigger; expired keys are invisible either way, so a
/// backlog only costs memory until later commands purge it.
pub const PURGE_PER_APPLY_MAX: usize = 32;

/// Most expired keys one expiry sweep ([`KvCommand::ExpireSweep`]) removes,
/// besides the [`PURGE_PER_APPLY_MAX`] every apply does: bounds the apply
/// (with events on, each removal is an `expired` event); a larger backlog
/// takes more sweeps.
pub const SWEEP_KEYS_MAX: usize = 1024;

/// Key counts for `INFO`'s keyspace line (`db0:keys=..,expires=..`).
/// Expired keys not yet purged are counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Stored keys.
    pub keys: u64,
    /// Stored keys with an expiry.
    pub expires: u64,
}

/// The replicated key-value store: strings, hashes, lists and sets with
/// expiry.
///
/// Commands arrive as [`KvCommand::encode`] bytes; outputs leave as
/// [`encode_reply`] bytes. Everything time-dependent uses
/// `ApplyContext::time_ms`, and nothing iterates in a process-dependent
/// order, so replicas that apply the same log hold identical state (and
/// produce byte-identical snapshots).
#[derive(Debug)]
pub struct Store {
    /// Shared with the RESP server's connections through [`LocalStore`],
    /// which serve lease reads from it under its lock (see
    /// [`synod::LocalReads`]): every change to it is made under the lock.
    state: Arc<Mutex<StoreState>>,
}

/// What [`Store`] holds, behind its lock: the state machine itself.
#[derive(Debug)]
pub(crate) struct StoreState {
    keyspace: Keyspace,
    /// The replicated ACL users (shared with the RESP server through
    /// [`Store::acl`]; only `apply` and `restore` change them).
    acl: Acl,
    /// The last user's rules' stamp checked (see `Store::user_allows`).
    stamps: crate::acl::StampCache,
    /// This node's pub/sub subscribers (shared with the RESP server through
    /// [`Store::pubsub`]): applied PUBLISHes are delivered to them. Not
    /// replicated state: nothing in it changes what `apply` returns.
    pubsub: crate::pubsub::PubSub,
}

impl Default for StoreState {
    fn default() -> StoreState {
        let pubsub = crate::pubsub::PubSub::default();
        let acl = Acl::default();
        let mut keyspace = Keyspace::default();
        keyspace.set_events(pubsub.clone());
        keyspace.set_acl(acl.clone());
        StoreState {
            keyspace,
            acl,
            stamps: crate::acl::StampCache::default(),
            pubsub,
        }
    }
}

impl StoreState {
    /// The handle on this store's ACL users, for the RESP server
    /// (`ServerConfig::acl`) and the admin HTTP port ([`Acl::check`]).
    pub fn acl(&self) -> Acl {
        self.acl.clone()
    }

    /// The handle on this node's pub/sub registry, for the RESP server
    /// (`ServerConfig::pubsub`): messages this store applies are delivered
    /// to the subscribers of the server given the same handle.
    pub fn pubsub(&self) -> crate::pubsub::PubSub {
        self.pubsub.clone()
    }

    /// The handle on this node's blocked clients, woken when applied
    /// writes give keys values: give it to the RESP server
    /// (`ServerConfig::blocked_clients`), as the ACL users.
    pub fn blocked_clients(&self) -> crate::BlockedClients {
        self.keyspace.blocked_clients().clone()
    }

    /// Key counts for `INFO`.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            keys: self.keyspace.len() as u64,
            expires: self.keyspace.expires_len() as u64,
        }
    }

    /// The dataset's accounted size in bytes (`used_memory_dataset`, see
    /// the formula in `crate::value`) and the replicated `maxmemory`
    /// limit (0: none), equal on every replica at the same point of the log.
    pub fn memory(&self) -> (u64, u64) {
        (self.keyspace.used_bytes(), self.keyspace.maxmemory_bytes())
    }

    /// Applies a typed command: [`StateMachine::apply`] without the byte
    /// codecs. First purges up to [`PURGE_PER_APPLY_MAX`] keys that expired
    /// at or before `ctx.time_ms`.
    ///
    /// Every change it makes is stamped with this apply's point of the log
    /// (see [`crate::watch`]); a transaction opened by a WATCH check whose
    /// keys changed answers nil and changes nothing.
    pub fn apply_command(&mut self, command: &KvCommand, ctx: &ApplyContext) -> Reply {
        self.keyspace.begin_apply(ctx.instance.0);
        self.keyspace
            .purge_expired(ctx.time_ms, PURGE_PER_APPLY_MAX);
        let command = match self.admitted(command) {
            Ok(command) => command,
            Err(refused) => {
                self.note_applied(ctx);
                return refused;
            }
        };
        // Purging first does not change the check's outcome: it removes only
        // dead entries, which the check already sees as absent, and their
        // tombstones carry their last write's stamp (see `crate::watch`).
        if let Some(aborted) = ops::watch_aborts(&self.keyspace, command, ctx.time_ms) {
            return aborted;
        }
        let is_try = matches!(command, KvCommand::Blocking { .. });
        self.keyspace.blocked_clients().applying_try(is_try);
        let reply = if command.involves_acl() {
            ops::acl::write(&mut self.keyspace, &self.acl, command, ctx)
        } else {
            ops::write(&mut self.keyspace, command, ctx)
        };
        let reply = ops::without_watch_reply(command, reply);
        self.keyspace.blocked_clients().applying_try(false);
        // A side effect outside the replicated state, in log order: the
        // node's subscribers get the messages this command published.
        self.pubsub.deliver_applied(command, &reply);
        self.note_applied(ctx);
        reply
    }

    /// Tells this node's pub/sub side (outside the replicated state) where
    /// an apply left the next expiry and the log clock.
    fn note_applied(&self, ctx: &ApplyContext) {
        self.pubsub
            .set_next_expiry_ms(self.keyspace.next_expiry_ms());
        self.pubsub.set_log_time_ms(ctx.time_ms);
    }

    /// Answers a read-only command without changing anything:
    /// [`StateMachine::query`] without the byte codecs. A command that
    /// writes gets an error reply.
    pub fn query_command(&self, command: &KvCommand, ctx: &ApplyContext) -> Reply {
        let command = match self.admitted(command) {
            Ok(command) => command,
            Err(refused) => return refused,
        };
        if let Some(aborted) = ops::watch_aborts(&self.keyspace, command, ctx.time_ms) {
            return aborted;
        }
        let reply = if command.involves_acl() {
            ops::acl::read(&self.keyspace, &self.acl, command, ctx)
        } else {
            ops::read(&self.keyspace, command, ctx)
        };
        ops::without_watch_reply(command, reply)
    }

    /// Whether [`Store::query_command`]'s answer to `command` depends on the
    /// time in this state: it reads a key with an expiry, or it is a
    /// keyspace-wide read (KEYS, SCAN, DBSIZE, RANDOMKEY) while some key has
    /// one. [`StateMachine::query_depends_on_time`] without the byte codec.
    ///
    /// When `false`, every time gives the same answer, so a read answered by
    /// read index is linearizable whatever time it is given. When `true`, the
    /// read must be answered at the log's clock at a point of the log inside
    /// the read's lifetime (the runtime sends it through the log, or answers
    /// it at the applied point's log clock when that answer is also the one
    /// at its own clock: `StateMachine::query_settles_by_clock`), never at a
    /// node's clock, or a node with a clock ahead could answer nil before a
    /// node with a clock behind answers the value.
    pub fn command_depends_on_time(&self, command: &KvCommand) -> bool {
        let command = match command {
            KvCommand::AsUser(run) => &run.command,
            command => command,
        };
        ops::acl::read_depends_on_time(&self.keyspace, command)
    }

    /// The command to run: `command` itself, or for a command with its ACL
    /// user ([`KvCommand::AsUser`]) the command it carries, if that user,
    /// at this point of the log, exists, is on and has the rules it was
    /// checked against; else the refusal, the same on every replica
    /// (the users are replicated state). See [`crate::AsUser`] for why.
    fn admitted_owned(&self, command: KvCommand) -> Result<KvCommand, Reply> {
        match command {
            KvCommand::AsUser(run) => {
                self.user_allows(&run)?;
                Ok(run.command)
            }
            command => Ok(command),
        }
    }

    /// [`Store::admitted_owned`] of a command held by reference.
    fn admitted<'a>(&self, command: &'a KvCommand) -> Result<&'a KvCommand, Reply> {
        match command {
            KvCommand::AsUser(run) => {
                self.user_allows(run)?;
                Ok(&run.command)
            }
            command => Ok(command),
        }
    }

    /// Whether `run`'s user, at this point of the log, exists, is on and
    /// has the rules `run` was checked against.
    fn user_allows(&self, run: &crate::AsUser) -> Result<(), Reply> {
        let users = self.acl.users();
        let generation = self.acl.generation();
        match users.get(&run.user) {
            Some(user) if user.enabled() && self.stamps.stamp(generation, user) == run.stamp => {
                Ok(())
            }
            _ => Err(Reply::error(ACL_CHANGED_IN_FLIGHT)),
        }
    }

    /// Checks the store's internal indexes agree; O(keys). For tests and
    /// the simulator.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.keyspace.check_invariants()
    }
}

fn undecodable(error: crate::DecodeError) -> Reply {
    Reply::error(format!("ERR undecodable command: {error}"))
}

impl StoreState {
    /// [`StateMachine::query_view`]'s job for a decoded read that
    /// `ops::read_off_loop` sends off the loop.
    fn view_job(&self, command: KvCommand, ctx: &ApplyContext) -> QueryJob {
        let view = self.keyspace.view();
        let ctx = *ctx;
        Box::new(move || encode_reply(&ops::read_view(&view, &command, &ctx)))
    }

    fn apply_decoded(
        &mut self,
        command: Result<KvCommand, crate::DecodeError>,
        ctx: &ApplyContext,
    ) -> Bytes {
        let reply = match command {
            Ok(command) => self.apply_command(&command, ctx),
            Err(error) => {
                // Still purge, so state after this instance does not depend
                // on whether its bytes decoded (it does not either way, but
                // keeping every apply alike is simpler to reason about).
                self.keyspace
                    .purge_expired(ctx.time_ms, PURGE_PER_APPLY_MAX);
                undecodable(error)
            }
        };
        encode_reply(&reply)
    }
}

/// The refusal of a command whose user's ACL rules changed between its
/// node's check and its apply (see [`crate::AsUser`]).
pub const ACL_CHANGED_IN_FLIGHT: &str = "NOPERM this user's ACL rules changed after the command was checked and before it ran; it was not run";

impl StateMachine for StoreState {
    fn apply(&mut self, command: &[u8], ctx: &ApplyContext) -> Bytes {
        self.apply_decoded(KvCommand::decode(command), ctx)
    }

    /// [`StateMachine::apply`] of each command, decoded with zero-copy
    /// slices where that is safe (see [`KvCommand::decode_shared`]): the
    /// same commands, replies and state as `apply`.
    ///
    /// Commands go in groups: a group is decoded, the CPU is asked to fetch
    /// the keyspace memory its keys lead to (`Keyspace::prefetch`: the
    /// walks overlap their cache misses), then its commands are applied in
    /// order. Decoding ahead changes nothing (it reads only the bytes), nor
    /// does the prefetch (a hint).
    fn apply_batch(&mut self, batch: &[synod::BatchCommand<'_>]) -> Vec<Bytes> {
        let mut replies = Vec::with_capacity(batch.len());
        let mut decoded = Vec::with_capacity(batch.len().min(PREFETCH_GROUP_MAX));
        for group in batch.chunks(PREFETCH_GROUP_MAX) {
            decoded.extend(
                group
                    .iter()
                    .map(|one| KvCommand::decode_shared(one.command)),
            );
            self.keyspace.prefetch(
                decoded
                    .iter()
                    .filter_map(|command| command.as_ref().ok()?.hot_key()),
            );
            for (command, one) in decoded.drain(..).zip(group) {
                replies.push(self.apply_decoded(command, &one.ctx));
            }
        }
        replies
    }

    fn query(&self, query: &[u8], ctx: &ApplyContext) -> Bytes {
        let reply = match KvCommand::decode(query) {
            Ok(command) => self.query_command(&command, ctx),
            Err(error) => undecodable(error),
        };
        encode_reply(&reply)
    }

    /// Fetches the trie paths of the keys the GETs and HGETs among
    /// `queries` look up (`Keyspace::prefetch`), read in place from their
    /// bytes: reads released together (a read-index round, a lease) then
    /// overlap their cache misses, as an applied batch does. A hint: the
    /// answers are the same without it.
    fn prefetch_queries(&self, queries: &[&[u8]]) {
        // `Keyspace::prefetch` walks at most PREFETCH_GROUP_MAX keys: as many
        // as the runtime hands over at once, so none is left out.
        const _: () = assert!(PREFETCH_GROUP_MAX >= synod::engine::QUERY_PREFETCH_GROUP);
        self.keyspace
            .prefetch(queries.iter().filter_map(|q| KvCommand::peek_read_key(q)));
    }

    /// Reads of expiring keys, save random draws, reads answered off the
    /// loop and reads of large values (`ops::read_settles_by_clock`): a
    /// refused or undecodable one is answered alike at any time, so it
    /// never comes here.
    fn query_settles_by_clock(&self, query: &[u8], ctx: &ApplyContext) -> bool {
        KvCommand::decode(query).is_ok_and(|command| match self.admitted(&command) {
            Ok(command) => ops::read_settles_by_clock(&self.keyspace, command, ctx.time_ms),
            Err(_) => false,
        })
    }

    fn query_depends_on_time(&self, query: &[u8]) -> bool {
        // An undecodable query is answered with an error at any time.
        KvCommand::decode(query).is_ok_and(|command| self.command_depends_on_time(&command))
    }

    fn snapshot(&self) -> Bytes {
        crate::acl_snapshot::append_users(snapshot::write(&self.keyspace.view()), &self.acl.users())
    }

    /// O(1) for the keyspace (a persistent trie) plus a copy of the users
    /// (a handful); the job encodes in O(keys) what `snapshot` would have
    /// returned now.
    fn snapshot_view(&self) -> Option<SnapshotJob> {
        let view = self.keyspace.view();
        let users = self.acl.users().clone();
        Some(Box::new(move || {
            crate::acl_snapshot::append_users(snapshot::write(&view), &users)
        }))
    }

    /// As `snapshot_view`, but written straight into the snapshot file a
    /// piece at a time: the encoded keyspace is never held whole in memory.
    fn snapshot_stream(&self) -> Option<SnapshotStream> {
        let view = self.keyspace.view();
        let trailer = crate::acl_snapshot::users_trailer(&self.acl.users());
        Some(Box::new(move |out: &mut dyn std::io::Write| {
            snapshot::write_to(&view, out)?;
            match trailer {
                Some(trailer) => out.write_all(&trailer),
                None => Ok(()),
            }
        }))
    }

    /// `KEYS`, `SCAN` with a large `COUNT`, and `HGETALL`/`LRANGE` of a
    /// large collection are answered from a view, off the event loop.
    fn query_view(&self, query: &[u8], ctx: &ApplyContext) -> Option<QueryJob> {
        // A refused one is answered on the loop (`query`).
        let command = self.admitted_owned(KvCommand::decode(query).ok()?).ok()?;
        ops::read_off_loop(&self.keyspace, &command, ctx.time_ms)
            .then(|| self.view_job(command, ctx))
    }

    /// The default's three steps on one decode: a GET is decoded (and its
    /// key copied) once instead of three times.
    fn serve_query(&self, query: &[u8], ctx: &ApplyContext) -> Served {
        let command = match KvCommand::decode(query) {
            Ok(command) => command,
            // As the three calls answer it: at any time (not through the
            // log), on the loop, with an error.
            Err(error) => return Served::Answer(encode_reply(&undecodable(error))),
        };
        let command = match self.admitted_owned(command) {
            Ok(command) => command,
            // Refused at any time, on the loop.
            Err(refused) => return Served::Answer(encode_reply(&refused)),
        };
        if self.command_depends_on_time(&command) {
            return Served::ThroughLog;
        }
        if ops::read_off_loop(&self.keyspace, &command, ctx.time_ms) {
            return Served::OffLoop(self.view_job(command, ctx));
        }
        Served::Answer(encode_reply(&self.query_command(&command, ctx)))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let (snapshot, users) = crate::acl_snapshot::split_users(snapshot)
            .map_err(|error| format!("corrupt kv snapshot (users): {error}"))?;
        let keyspace =
            snapshot::read(snapshot).map_err(|error| format!("corrupt kv snapshot: {error}"))?;
        let blocked_clients = self.keyspace.blocked_clients().clone();
        self.keyspace = keyspace;
        self.keyspace.set_blocked_clients(blocked_clients.clone());
        self.keyspace.set_events(self.pubsub.clone());
        self.pubsub
            .set_next_expiry_ms(self.keyspace.next_expiry_ms());
        self.keyspace.set_acl(self.acl.clone());
        *self.acl.users_mut() = users;
        // Any key may hold values now: every waiter tries again.
        blocked_clients.wake_all();
        Ok(())
    }
}

impl Default for Store {
    fn default() -> Store {
        Store {
            state: Arc::new(Mutex::new(StoreState::default())),
        }
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        Store::default()
    }

    /// The state, locked. A panic while it was held (in `apply`) stops the
    /// node anyway; what it left is what the node had.
    fn lock(&self) -> MutexGuard<'_, StoreState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The handle the RESP server serves lease reads through, on the
    /// connection's task (`ServerConfig::local_reads`).
    pub fn local(&self) -> LocalStore {
        LocalStore {
            state: Arc::clone(&self.state),
        }
    }

    /// The handle on this store's ACL users, for the RESP server
    /// (`ServerConfig::acl`) and the admin HTTP port ([`Acl::check`]).
    pub fn acl(&self) -> Acl {
        self.lock().acl()
    }

    /// The handle on this node's pub/sub registry, for the RESP server
    /// (`ServerConfig::pubsub`): messages this store applies are delivered
    /// to the subscribers of the server given the same handle.
    pub fn pubsub(&self) -> crate::pubsub::PubSub {
        self.lock().pubsub()
    }

    /// The handle on this node's blocked clients, woken when applied
    /// writes give keys values: give it to the RESP server
    /// (`ServerConfig::blocked_clients`), as the ACL users.
    pub fn blocked_clients(&self) -> crate::BlockedClients {
        self.lock().blocked_clients()
    }

    /// Key counts for `INFO`.
    pub fn stats(&self) -> StoreStats {
        self.lock().stats()
    }

    /// The dataset's accounted size in bytes and the replicated
    /// `maxmemory` limit: see `StoreState::memory`.
    pub fn memory(&self) -> (u64, u64) {
        self.lock().memory()
    }

    /// Applies a typed command: [`StateMachine::apply`] without the byte
    /// codecs (see `StoreState::apply_command`).
    pub fn apply_command(&mut self, command: &KvCommand, ctx: &ApplyContext) -> Reply {
        self.lock().apply_command(command, ctx)
    }

    /// Answers a read-only command without changing anything:
    /// [`StateMachine::query`] without the byte codecs. A command that
    /// writes gets an error reply.
    pub fn query_command(&self, command: &KvCommand, ctx: &ApplyContext) -> Reply {
        self.lock().query_command(command, ctx)
    }

    /// Whether [`Store::query_command`]'s answer to `command` depends on the
    /// time in this state (see `StoreState::command_depends_on_time`).
    pub fn command_depends_on_time(&self, command: &KvCommand) -> bool {
        self.lock().command_depends_on_time(command)
    }

    /// Checks the store's internal indexes agree; O(keys). For tests and
    /// the simulator.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.lock().check_invariants()
    }
}

/// Every call goes to the state under the lock (see [`LocalStore`]).
impl StateMachine for Store {
    fn apply(&mut self, command: &[u8], ctx: &ApplyContext) -> Bytes {
        self.lock().apply(command, ctx)
    }

    fn apply_batch(&mut self, batch: &[BatchCommand<'_>]) -> Vec<Bytes> {
        self.lock().apply_batch(batch)
    }

    fn query(&self, query: &[u8], ctx: &ApplyContext) -> Bytes {
        self.lock().query(query, ctx)
    }

    fn query_depends_on_time(&self, query: &[u8]) -> bool {
        self.lock().query_depends_on_time(query)
    }

    fn query_settles_by_clock(&self, query: &[u8], ctx: &ApplyContext) -> bool {
        self.lock().query_settles_by_clock(query, ctx)
    }

    fn serve_query(&self, query: &[u8], ctx: &ApplyContext) -> Served {
        self.lock().serve_query(query, ctx)
    }

    fn prefetch_queries(&self, queries: &[&[u8]]) {
        self.lock().prefetch_queries(queries)
    }

    fn snapshot(&self) -> Bytes {
        self.lock().snapshot()
    }

    fn snapshot_view(&self) -> Option<SnapshotJob> {
        self.lock().snapshot_view()
    }

    fn snapshot_stream(&self) -> Option<SnapshotStream> {
        self.lock().snapshot_stream()
    }

    fn query_view(&self, query: &[u8], ctx: &ApplyContext) -> Option<QueryJob> {
        self.lock().query_view(query, ctx)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.lock().restore(snapshot)
    }

    fn durable_end(&self) -> Option<InstanceId> {
        self.lock().durable_end()
    }

    fn sync(&mut self, through: InstanceId) -> Option<StateSyncJob> {
        self.lock().sync(through)
    }

    fn applied_through(&mut self, end: InstanceId) {
        self.lock().applied_through(end)
    }

    fn digest(&self) -> Option<u64> {
        self.lock().digest()
    }
}

/// A handle on a [`Store`]'s state for the RESP server's connections:
/// they answer lease reads with it on their own task
/// ([`LocalStore::serve`]), without the node's event loop.
#[derive(Clone, Debug)]
pub struct LocalStore {
    state: Arc<Mutex<StoreState>>,
}

impl LocalStore {
    /// Answers the linearizable read `query` (a read-only command's
    /// [`KvCommand::encode`] bytes, as `Node::read` takes them) here, if
    /// `reads`' permit covers a read arriving now; `None`: send it to the
    /// node. Holds the store's lock, which every apply and restore takes,
    /// from before the permit is read until the answer is made (the
    /// contract of [`synod::LocalReads::serve`]). Never waits for the lock:
    /// a store busy elsewhere (a restore on a blocking thread, an apply on
    /// another thread) sends the read to the node.
    pub fn serve(&self, reads: &synod::LocalReads, query: &[u8]) -> Option<Bytes> {
        // A hint first (no lock where no permit stands: a follower, a
        // leader with writes in flight); `serve` reads it again under the
        // lock, which is the check that counts.
        reads.permit()?;
        let state = self.state.try_lock().ok()?;
        reads.serve(&*state, query)
    }
}
