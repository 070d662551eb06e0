//! The words a scenario file is written in: transports, traffic directions, timeline actions
//! and fault kinds, each an enum parsed once by serde, so a wrong word is an error naming the
//! file, line and key and listing every valid value.

use serde::{Deserialize, Serialize};

/// How the client sends mail.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Office 365 SMTP submission with XOAUTH2.
    #[default]
    Smtp,
    /// Microsoft Graph `sendMail`.
    Graph,
}

/// Which way a traffic window's mail goes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Sent by the client.
    #[default]
    Outbound,
    /// Arriving in the mailbox, for the client's inbound sync.
    Inbound,
}

/// What a timeline step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StepAction {
    /// A new secret in the tenant, and its value in the client's secret file (`value`).
    RotateSecret,
    /// A value in the client's secret file only (`value`): a wrong paste.
    PasteSecret,
    /// The app registration is deleted.
    DeleteApp,
    /// The deleted app is restored.
    RestoreApp,
    /// Every delta token issued so far stops working.
    ExpireDeltaTokens,
    /// The client is stopped and started again on the same state.
    RestartClient,
    /// A fault window opens (`target`, `kind`, ...).
    Fault,
    /// The faults on `target` end.
    ClearFaults,
}

/// A fault kind as a scenario names it (`maildrill::fault::FaultKind` once lowered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
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
