//! maildrill: a fault-injection harness for mail clients that depend on Microsoft Entra ID.
#![warn(missing_docs)]

pub mod fault;
pub mod journal;
pub mod mock;
pub mod scenario;
pub mod seed;
pub mod serve;
pub mod tenant;
pub mod time;
pub mod tls;
pub mod wiring;
