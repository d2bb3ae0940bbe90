//! # synod: the node runtime (being written)

mod state_machine;

pub use state_machine::{ApplyContext, StateMachine};
