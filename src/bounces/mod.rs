//! Bounces and complaints: reading what comes back after a message left, and keeping the list
//! clean with it.
//!
//! - [`verp`] — the per-message envelope sender `bounces+TOKEN@domain` and reading it back.

pub mod verp;
