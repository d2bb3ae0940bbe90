//! # synod-kv: replicated key-value store with a Redis-protocol front end (being written)
