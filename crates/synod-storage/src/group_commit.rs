//! Group commit for many concurrent appenders: each appender adds its records
//! and waits; whoever finds no sync running becomes the syncer and makes
//! *everything* appended so far durable with one write and one `fdatasync`,
//! outside the lock, while the others keep appending for the next round.

use crate::{Storage, StorageError, Wal};
use std::sync::{Condvar, Mutex, MutexGuard};
use synod_core::Record;

struct State {
    wal: Wal,
    /// Appends so far (each call counts one).
    appended: u64,
    /// Appends known durable.
    durable: u64,
    syncing: bool,
    failed: bool,
    /// fsyncs run so far.
    syncs: u64,
}

/// A [`Wal`] shared by threads that each need their records durable.
pub struct GroupCommit {
    state: Mutex<State>,
    synced: Condvar,
}

impl GroupCommit {
    /// Shares a log.
    pub fn new(wal: Wal) -> GroupCommit {
        GroupCommit {
            state: Mutex::new(State {
                wal,
                appended: 0,
                durable: 0,
                syncing: false,
                failed: false,
                syncs: 0,
            }),
            synced: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `records` and returns once they are durable.
    pub fn append_durable(&self, records: &[Record]) -> Result<(), StorageError> {
        let mut state = self.lock();
        if state.failed {
            return Err(StorageError::Poisoned);
        }
        state.wal.append(records)?;
        state.appended += 1;
        let mine = state.appended;
        loop {
            if state.durable >= mine {
                return Ok(());
            }
            if state.failed {
                return Err(StorageError::Poisoned);
            }
            if state.syncing {
                state = self.synced.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Become the syncer for everything appended so far.
            let target = state.appended;
            let job = state.wal.begin_sync()?;
            state.syncing = true;
            drop(state);
            let result = job.as_ref().map_or(Ok(()), |job| job.run());
            state = self.lock();
            state.syncing = false;
            let finished = match job {
                Some(job) => state.wal.finish_sync(job, result),
                None => result,
            };
            state.syncs += 1;
            match finished {
                Ok(()) => state.durable = target,
                Err(err) => {
                    state.failed = true;
                    self.synced.notify_all();
                    return Err(err);
                }
            }
            self.synced.notify_all();
        }
    }

    /// How many fsyncs ran so far (appends / syncs = mean batch).
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// Gives the log back.
    pub fn into_inner(self) -> Wal {
        self.state
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .wal
    }
}
