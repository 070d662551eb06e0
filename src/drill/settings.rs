//! The scenario's `[client]` settings as environment keys, for subjects that let a scenario
//! tune them (`maildrill client` reads them back; any subject may).

use std::time::Duration;

use crate::envfile::Environment;
use crate::subject::Settings;

/// `smtp` or `graph`.
pub const TRANSPORT: &str = "MAILDRILL_TRANSPORT";
const LATENCY_THRESHOLD: &str = "MAILDRILL_LATENCY_THRESHOLD";
const BACKOFF_CAP: &str = "MAILDRILL_BACKOFF_CAP";
const REFRESH_AHEAD: &str = "MAILDRILL_REFRESH_AHEAD";
const SYNC_INTERVAL: &str = "MAILDRILL_SYNC_INTERVAL";
const INBOUND: &str = "MAILDRILL_INBOUND";

/// Adds the settings to an environment (durations as humantime text, e.g. `5m`).
pub fn export(env: Environment, settings: &Settings) -> Environment {
    let text = |d: Duration| humantime::format_duration(d).to_string();
    env.with(TRANSPORT, if settings.graph { "graph" } else { "smtp" })
        .with(LATENCY_THRESHOLD, &text(settings.latency_threshold))
        .with(BACKOFF_CAP, &text(settings.backoff_cap))
        .with(REFRESH_AHEAD, &text(settings.refresh_ahead))
        .with(SYNC_INTERVAL, &text(settings.sync_interval))
        .with(INBOUND, if settings.inbound { "true" } else { "false" })
}

/// The settings an environment gives, each missing one at a scenario's default.
pub fn import(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
    let duration = |key: &str, default: u64| match get(key) {
        None => Ok(Duration::from_secs(default)),
        Some(text) => humantime::parse_duration(&text).map_err(|e| format!("{key}={text}: {e}")),
    };
    let graph = match get(TRANSPORT).as_deref() {
        None | Some("smtp") => false,
        Some("graph") => true,
        Some(other) => return Err(format!("{TRANSPORT}={other}: expected smtp or graph")),
    };
    Ok(Settings {
        graph,
        latency_threshold: duration(LATENCY_THRESHOLD, 300)?,
        backoff_cap: duration(BACKOFF_CAP, 300)?,
        refresh_ahead: duration(REFRESH_AHEAD, 300)?,
        sync_interval: duration(SYNC_INTERVAL, 60)?,
        inbound: get(INBOUND).as_deref() == Some("true"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_survive_the_environment() {
        let settings = Settings {
            graph: true,
            latency_threshold: Duration::from_secs(90),
            backoff_cap: Duration::from_secs(20),
            refresh_ahead: Duration::from_secs(120),
            sync_interval: Duration::from_secs(15),
            inbound: true,
        };
        let env = export(Environment::default(), &settings);
        assert_eq!(import(|k| env.get(k).map(str::to_string)), Ok(settings));
        assert!(import(|k| (k == TRANSPORT).then(|| "pigeon".to_string())).is_err());
    }
}
