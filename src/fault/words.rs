//! Faults as words (a scenario's `fault` step, a control API call): a kind's name and the
//! parameters it needs, lowered into a [`FaultKind`], each mistake naming its field.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CatalogueReply, FaultKind, Target};

/// A fault kind as scenarios and the control API name it ([`FaultKind`] once lowered).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Deserialize,
    Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FaultName {
    /// Answer after `delay` (default 30 s).
    Latency,
    /// Never answer.
    Timeout,
    /// Close the connection without a reply.
    ResetPeer,
    /// Only the first `bytes` bytes of each reply get through, then the connection closes.
    LimitData,
    /// Replies trickle at `bytes_per_second`.
    Bandwidth,
    /// Answer with the catalogue reply `reply`.
    Respond,
    /// Graph `sendMail` stores the message, then answers with `reply`.
    FailButDeliver,
    /// SMTP: store the message, then drop the connection before the final reply.
    DropAfterData,
    /// SMTP: fail the TLS handshake after `220` to STARTTLS.
    TlsFailure,
    /// HTTP: `200` with a cut body.
    MalformedBody,
}

impl FaultName {
    /// Every name, in the order errors list them.
    pub const ALL: [FaultName; 10] = [
        FaultName::Latency,
        FaultName::Timeout,
        FaultName::ResetPeer,
        FaultName::LimitData,
        FaultName::Bandwidth,
        FaultName::Respond,
        FaultName::FailButDeliver,
        FaultName::DropAfterData,
        FaultName::TlsFailure,
        FaultName::MalformedBody,
    ];

    /// Its name in scenarios (and the first word of a journal entry's `fault`).
    pub fn as_str(self) -> &'static str {
        match self {
            FaultName::Latency => "latency",
            FaultName::Timeout => "timeout",
            FaultName::ResetPeer => "reset_peer",
            FaultName::LimitData => "limit_data",
            FaultName::Bandwidth => "bandwidth",
            FaultName::Respond => "respond",
            FaultName::FailButDeliver => "fail_but_deliver",
            FaultName::DropAfterData => "drop_after_data",
            FaultName::TlsFailure => "tls_failure",
            FaultName::MalformedBody => "malformed_body",
        }
    }

    /// The name a journal entry's `fault` text starts with.
    pub fn of_journal(fault: &str) -> Option<FaultName> {
        let word = fault.split(' ').next().unwrap_or("");
        FaultName::ALL.into_iter().find(|f| f.as_str() == word)
    }
}

/// The delay of a `latency` fault that names none.
pub const DEFAULT_LATENCY: Duration = Duration::from_secs(30);

/// A fault kind's name and the parameters it may need.
#[derive(Debug, Clone, Copy)]
pub struct FaultWords<'a> {
    /// The kind.
    pub kind: FaultName,
    /// `respond` and `fail_but_deliver`: the catalogue reply key.
    pub reply: Option<&'a str>,
    /// `respond` and `fail_but_deliver`: the `Retry-After` to send instead of the catalogue's
    /// (`""` removes it).
    pub retry_after: Option<&'a str>,
    /// `latency`: the added delay.
    pub delay: Option<Duration>,
    /// `limit_data`: the bytes of each reply that get through.
    pub bytes: Option<u64>,
    /// `bandwidth`: the rate.
    pub bytes_per_second: Option<u64>,
}

/// A parameter missing or wrong, by the field that holds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct WordError {
    /// The field: `reply`, `bytes`, `bytes_per_second`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn needed<T: Copy>(value: Option<T>, field: &'static str, what: &str) -> Result<T, WordError> {
    value.ok_or_else(|| WordError {
        field,
        message: what.to_string(),
    })
}

impl FaultWords<'_> {
    /// Just a kind, no parameters yet.
    pub fn of(kind: FaultName) -> FaultWords<'static> {
        FaultWords {
            kind,
            reply: None,
            retry_after: None,
            delay: None,
            bytes: None,
            bytes_per_second: None,
        }
    }

    /// The fault kind on `target`, or the field that is missing or wrong.
    pub fn lower(&self, target: Target) -> Result<FaultKind, WordError> {
        Ok(match self.kind {
            FaultName::Latency => FaultKind::Latency {
                delay: self.delay.unwrap_or(DEFAULT_LATENCY),
            },
            FaultName::Timeout => FaultKind::Timeout,
            FaultName::ResetPeer => FaultKind::ResetPeer,
            FaultName::DropAfterData => FaultKind::DropAfterData,
            FaultName::TlsFailure => FaultKind::TlsFailure,
            FaultName::MalformedBody => FaultKind::MalformedBody,
            FaultName::LimitData => FaultKind::LimitData {
                bytes: usize::try_from(needed(
                    self.bytes,
                    "bytes",
                    "limit_data needs the bytes of each reply that get through",
                )?)
                .unwrap_or(usize::MAX),
            },
            FaultName::Bandwidth => FaultKind::Bandwidth {
                bytes_per_second: needed(
                    self.bytes_per_second,
                    "bytes_per_second",
                    "bandwidth needs its rate in bytes per second",
                )?,
            },
            name @ (FaultName::Respond | FaultName::FailButDeliver) => {
                let key = needed(self.reply, "reply", "a catalogue reply key is needed")?;
                let reply = CatalogueReply::parse(target, key).map_err(|e| WordError {
                    field: "reply",
                    message: e.to_string(),
                })?;
                let retry_after = self.retry_after.map(str::to_string);
                if name == FaultName::Respond {
                    FaultKind::Respond { reply, retry_after }
                } else {
                    FaultKind::FailButDeliver { reply, retry_after }
                }
            }
        })
    }
}

impl FaultKind {
    /// The kind's name in scenarios and the control API.
    pub fn name(&self) -> FaultName {
        match self {
            FaultKind::Latency { .. } => FaultName::Latency,
            FaultKind::Timeout => FaultName::Timeout,
            FaultKind::ResetPeer => FaultName::ResetPeer,
            FaultKind::LimitData { .. } => FaultName::LimitData,
            FaultKind::Respond { .. } => FaultName::Respond,
            FaultKind::MalformedBody => FaultName::MalformedBody,
            FaultKind::Bandwidth { .. } => FaultName::Bandwidth,
            FaultKind::DropAfterData => FaultName::DropAfterData,
            FaultKind::TlsFailure => FaultName::TlsFailure,
            FaultKind::FailButDeliver { .. } => FaultName::FailButDeliver,
        }
    }
}

impl CatalogueReply {
    /// Every catalogue key a `respond` fault on `target` accepts.
    pub fn keys(target: Target) -> Vec<&'static str> {
        use crate::mock::wire::{EntraError, GraphError};
        match target {
            Target::Entra => std::iter::once("throttled")
                .chain(EntraError::ALL.iter().map(|e| e.key()))
                .collect(),
            Target::Graph => std::iter::once("html_unavailable")
                .chain(GraphError::ALL.iter().map(|e| e.key()))
                .collect(),
            Target::Smtp => crate::mock::smtp::replies::KEYS.to_vec(),
            Target::Alerts => Vec::new(),
        }
    }
}
