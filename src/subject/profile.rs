//! The bundled client's profiles: remediated, the 2025 client, and the mutants that prove the
//! harness catches one deliberate bug each. Harness vocabulary, lowered into the client's
//! configuration by [`Bundled`](super::Bundled); the client itself knows none of it.

use std::fmt;
use std::str::FromStr;

/// The client's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Everything the post-mortem asked for.
    #[default]
    Remediated,
    /// The behaviour of 2025: fixed 1 s retries, five attempts, no circuit.
    Naive2025,
    /// The 2025 behaviour of many multi-tenant integrations: `invalid_client` taken for the
    /// user's failure, every affected user disconnected (refresh token and queued mail
    /// dropped), each user's refresh retried on its own (five attempts, 1 s apart), no hold
    /// of the app, no monitors.
    Naive2025Delegated,
    /// The remediated client with one deliberate bug, to prove the harness catches it.
    Mutant(Mutation),
}

/// One deliberate bug in an otherwise remediated client (mutation testing of the harness).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mutation {
    /// Every client waits the same: no jitter in the backoff.
    NoJitter,
    /// `Retry-After` is not read.
    IgnoresRetryAfter,
    /// A message whose credentials or token are refused is failed, not kept.
    DropsAfterAuthFailure,
    /// Refused credentials are retried every second, with no hold at the token provider.
    TightAuthLoop,
    /// No credential expiry monitor.
    NoExpiryMonitor,
    /// The latency monitor's threshold is never reached.
    LatencyNeverFires,
    /// A send with no reply after the final dot is taken for a failure and sent again (the
    /// server may have it: a duplicate).
    FailsUnknownSends,
    /// A restarted process starts with an empty outbox.
    ForgetsOutbox,
    /// Delegated mode: `invalid_client` marks the user's connection as needing the user
    /// instead of holding the app (every user is told to reconnect during a secret expiry).
    DisconnectsOnInvalidClient,
}

impl Mutation {
    /// Every mutation, in a fixed order.
    pub const ALL: [Mutation; 9] = [
        Mutation::NoJitter,
        Mutation::IgnoresRetryAfter,
        Mutation::DropsAfterAuthFailure,
        Mutation::TightAuthLoop,
        Mutation::NoExpiryMonitor,
        Mutation::LatencyNeverFires,
        Mutation::FailsUnknownSends,
        Mutation::ForgetsOutbox,
        // Only delegated scenarios tell it from the remediated client: chaos's catch test
        // (tests/chaos.rs `MUTANTS`) lists it once chaos draws delegated timelines.
        Mutation::DisconnectsOnInvalidClient,
    ];

    /// Its name in a profile (`mutant:NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Mutation::NoJitter => "no-jitter",
            Mutation::IgnoresRetryAfter => "ignores-retry-after",
            Mutation::DropsAfterAuthFailure => "drops-after-auth-failure",
            Mutation::TightAuthLoop => "tight-auth-loop",
            Mutation::NoExpiryMonitor => "no-expiry-monitor",
            Mutation::LatencyNeverFires => "latency-never-fires",
            Mutation::FailsUnknownSends => "fails-unknown-sends",
            Mutation::ForgetsOutbox => "forgets-outbox",
            Mutation::DisconnectsOnInvalidClient => "disconnects-on-invalid-client",
        }
    }
}

impl Profile {
    /// Parses `remediated`, `naive-2025`, `naive-2025-delegated` or `mutant:NAME`.
    pub fn parse(name: &str) -> Option<Profile> {
        match name {
            "remediated" => Some(Profile::Remediated),
            "naive-2025" => Some(Profile::Naive2025),
            "naive-2025-delegated" => Some(Profile::Naive2025Delegated),
            _ => {
                let mutation = name.strip_prefix("mutant:")?;
                Mutation::ALL
                    .into_iter()
                    .find(|m| m.name() == mutation)
                    .map(Profile::Mutant)
            }
        }
    }

    /// Every profile name `parse` accepts.
    pub fn names() -> Vec<String> {
        let mut names = vec![
            "remediated".to_string(),
            "naive-2025".to_string(),
            "naive-2025-delegated".to_string(),
        ];
        names.extend(Mutation::ALL.iter().map(|m| format!("mutant:{}", m.name())));
        names
    }

    /// Whether this profile carries `mutation`.
    pub fn has(self, mutation: Mutation) -> bool {
        self == Profile::Mutant(mutation)
    }

    /// Whether the client has the post-mortem's features (remediated, or a mutant of it).
    pub fn remediated(self) -> bool {
        !matches!(self, Profile::Naive2025 | Profile::Naive2025Delegated)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Profile::Remediated => f.write_str("remediated"),
            Profile::Naive2025 => f.write_str("naive-2025"),
            Profile::Naive2025Delegated => f.write_str("naive-2025-delegated"),
            Profile::Mutant(m) => write!(f, "mutant:{}", m.name()),
        }
    }
}

/// A profile name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected one of {}, got {given:?}", Profile::names().join(", "))]
pub struct UnknownProfile {
    /// The name given.
    pub given: String,
}

impl FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(name: &str) -> Result<Profile, UnknownProfile> {
        Profile::parse(name).ok_or_else(|| UnknownProfile {
            given: name.to_string(),
        })
    }
}

impl<'de> serde::Deserialize<'de> for Profile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Profile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
