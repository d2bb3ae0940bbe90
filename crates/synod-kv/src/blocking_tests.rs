//! Tests of the blocked-client registry and the blocking commands' parsing.
