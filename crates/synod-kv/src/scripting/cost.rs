//! The work a script does inside one Lua instruction or one C call,
//! charged to its instruction budget.
//!
//! The budget is counted by Lua's count hook, which runs between VM
//! instructions only: a concatenation of two 8 MB strings, `s:upper()`,
//! a string comparison, `table.insert(t, 1, v)`, `table.sort`, `next` on a
//! sparse table, `loadstring` of a large source or a garbage collection is
//! one instruction, or one C call, to it. Synod's Lua 5.1
//! (`vendor/lua-src`, see its SYNOD.md) counts that work as it is done,
//! in units of about one cheap VM instruction (one per 16 bytes copied,
//! compared or hashed, one per byte handled one at a time, one per
//! table slot scanned or rehashed, 4 per element the table library moves
//! or compares, one per source byte parsed, one per 16 units of the
//! collector's work: see `lua.h`), and cuts the hook's current window
//! short so the hook runs before the next instruction. The hook then
//! charges the window's true length plus that cost.
//!
//! The counts are a function of the run alone (the same on every replica),
//! as the instruction count is. Charging is off unless turned on
//! ([`LuaCost::enable`]): log entries written before it
//! ([`super::Limits::costs_charged`]) replay exactly as they were applied.
//!
//! Synod's own Rust libraries (`cjson`, `cmsgpack`, `struct`,
//! `redis.sha1hex`, `redis.call`'s arguments) charge their input and output
//! through the same counter ([`charge`]).

use mlua::ffi::lua_State;
use mlua::Lua;

// Synod's additions to Lua 5.1 (vendor/lua-src/lua-5.1.5/lstate.c).
extern "C" {
    fn lua_synod_enable(state: *mut lua_State, room: usize);
    fn lua_synod_set_room(state: *mut lua_State, room: usize);
    fn lua_synod_take_cost(state: *mut lua_State) -> usize;
    fn lua_synod_take_skipped(state: *mut lua_State) -> usize;
    fn synod_charge(state: *mut lua_State, units: usize);
}

/// Bytes of input or output a Rust library handles per unit charged when
/// it copies them.
pub(crate) const BYTES_PER_UNIT: usize = 16;
/// Bytes per unit when a Rust library handles them one at a time
/// (parsing, hashing, writing): as Lua's C loops that do (`lua.h`).
pub(crate) const CHARS_PER_UNIT: usize = 1;

/// The cost counter of one Lua state, charging on.
///
/// Holds the state's main thread; it lives in the state's own app data
/// and in its hook, so never outlives the state.
#[derive(Clone, Copy)]
pub(crate) struct LuaCost {
    state: *mut lua_State,
}

impl LuaCost {
    /// Turns charging on for `lua` (call it once its count hook is set):
    /// a table library loop stops the script once the cost passes `room`
    /// instructions, see [`LuaCost::set_room`]. Later calls of [`charge`]
    /// with this `lua` charge too.
    pub(crate) fn enable(lua: &Lua, room: u64) -> mlua::Result<LuaCost> {
        let mut state: *mut lua_State = std::ptr::null_mut();
        // SAFETY: exec_raw hands the state's current thread (the main one
        // here: no callback is running), valid while `lua` lives; the
        // counters it reaches are the state's global ones.
        unsafe {
            lua.exec_raw::<()>((), |raw| state = raw)?;
        }
        if state.is_null() {
            return Err(mlua::Error::RuntimeError("no Lua state".into()));
        }
        let cost = LuaCost { state };
        // SAFETY: `state` is the live state of `lua`.
        unsafe { lua_synod_enable(state, clamp(room)) };
        lua.set_app_data(cost);
        Ok(cost)
    }

    /// What the hook, run every `step` instructions, charges now: the
    /// window's true length (`step` less the instructions a charge made it
    /// skip: a window cut short after k instructions counts k + 1) plus
    /// the cost charged since the last call.
    pub(crate) fn window(&self, step: u32) -> u64 {
        // SAFETY: the hook that calls this is owned by the live state.
        let (skipped, cost) = unsafe {
            (
                lua_synod_take_skipped(self.state),
                lua_synod_take_cost(self.state),
            )
        };
        u64::from(step)
            .saturating_sub(skipped as u64)
            .saturating_add(cost as u64)
    }

    /// The cost charged since the last [`LuaCost::window`] (for the end
    /// of a run, when no hook comes again).
    pub(crate) fn settle(&self) -> u64 {
        // SAFETY: called while the state lives.
        unsafe { lua_synod_take_cost(self.state) as u64 }
    }

    /// What remains of the budget: a C loop whose length no memory limit
    /// bounds (`table.insert` at a position far below 1...) raises
    /// "script stopped" once its cost passes it.
    pub(crate) fn set_room(&self, room: u64) {
        // SAFETY: called while the state lives.
        unsafe { lua_synod_set_room(self.state, clamp(room)) };
    }
}

fn clamp(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// Charges `units` to `lua`'s budget when charging is on for it (see
/// [`LuaCost::enable`]); nothing otherwise. The hook runs before the next
/// instruction of the script's thread.
pub(crate) fn charge(lua: &Lua, units: usize) {
    if units == 0 {
        return;
    }
    let Some(cost) = lua.app_data_ref::<LuaCost>().map(|cost| *cost) else {
        return;
    };
    // SAFETY: the app data belongs to the live `lua`.
    unsafe { synod_charge(cost.state, units) };
}
