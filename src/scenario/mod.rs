//! Scenario files: the incident timelines users write, parsed into plain serde structs
//! ([`file`](mod@file)) and lowered into validated model values.
//!
//! This first slice covers the scenario's identity, calendar and tenant, which `maildrill serve
//! --scenario` needs; the client, traffic, timeline and expectations sections come with the
//! runner.

pub mod file;

pub use file::{LoadError, ScenarioFile, load, parse};
