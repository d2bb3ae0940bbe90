//! # synod-net: peer networking (placeholder, being written)
