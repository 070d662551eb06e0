//! Scenario files: the incident timelines users write, parsed into plain serde structs
//! ([`file`](mod@file)) and lowered by the runner into a validated plan; and their JSON Schema.

pub mod file;

pub use file::{LoadError, ScenarioFile, load, parse};

/// The JSON Schema of scenario files (`maildrill schema`), for editor completion of TOML.
pub fn schema() -> String {
    let schema = schemars::schema_for!(ScenarioFile);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}
