//! # synod-resp: the Redis protocol (being written)

pub mod reply;

pub use reply::Reply;
