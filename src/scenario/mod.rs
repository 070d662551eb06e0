//! Scenario files: the incident timelines users write, parsed into plain serde structs
//! ([`file`](mod@file)) in the words of [`vocab`], lowered into the validated [`Plan`] a replay
//! follows ([`plan`]); and their JSON Schema.

pub mod file;
pub mod plan;
pub mod vocab;

pub use file::{LoadError, ScenarioFile, load, parse};
pub use plan::{Plan, lower};

/// The JSON Schema of scenario files (`maildrill schema`), for editor completion of TOML.
pub fn schema() -> String {
    let schema = schemars::schema_for!(ScenarioFile);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}
