//! The trace: what a replay showed on the wire and in its plan, as instants and windows on the
//! virtual clock, for the HTML report's timeline and the fault coverage map. Plain data; it
//! draws nothing and judges nothing (verdicts stay in `check.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::fault::FaultName;

/// A lane of the timeline: one row of marks or windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    /// Secret and certificate lifetimes, rotations.
    Credentials,
    /// Fault windows.
    Faults,
    /// Token requests.
    Token,
    /// SMTP transactions.
    Smtp,
    /// Graph `sendMail` calls.
    Graph,
    /// Messages submitted and not yet accepted by the server.
    Outbox,
    /// Inbound sync lag.
    Sync,
    /// Alerts the sink accepted.
    Alerts,
    /// Client restarts.
    Restarts,
}

impl Lane {
    /// Every lane, top to bottom.
    pub const ALL: [Lane; 9] = [
        Lane::Credentials,
        Lane::Faults,
        Lane::Token,
        Lane::Smtp,
        Lane::Graph,
        Lane::Outbox,
        Lane::Sync,
        Lane::Alerts,
        Lane::Restarts,
    ];

    /// Its label.
    pub fn label(self) -> &'static str {
        match self {
            Lane::Credentials => "credentials",
            Lane::Faults => "faults",
            Lane::Token => "token requests",
            Lane::Smtp => "SMTP sends",
            Lane::Graph => "Graph sendMail",
            Lane::Outbox => "outbox depth",
            Lane::Sync => "inbound sync lag",
            Lane::Alerts => "alerts",
            Lane::Restarts => "client restarts",
        }
    }
}

/// What happened at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MarkKind {
    /// A token request answered with a token.
    TokenOk,
    /// A token request refused for its credential (a 4xx other than 429).
    TokenCredential,
    /// A token request that failed for a while (5xx, no reply, a cut reply).
    TokenTransient,
    /// A token request answered 429.
    TokenThrottled,
    /// A send the server accepted.
    SendOk,
    /// A send that failed.
    SendFailed,
    /// A send whose outcome the client could not know.
    SendUnknown,
    /// An alert triggered.
    AlertTrigger,
    /// An alert resolved.
    AlertResolve,
    /// A working credential became available (rotation, restore).
    Rotation,
    /// Something else happened to the credential (a wrong paste, the app deleted).
    CredentialChange,
    /// The client was restarted.
    Restart,
}

impl MarkKind {
    /// What it means, in words.
    pub fn label(self) -> &'static str {
        match self {
            MarkKind::TokenOk => "token issued",
            MarkKind::TokenCredential => "credential refused",
            MarkKind::TokenTransient => "transient failure",
            MarkKind::TokenThrottled => "throttled (429)",
            MarkKind::SendOk => "accepted",
            MarkKind::SendFailed => "failed attempt",
            MarkKind::SendUnknown => "outcome unknown",
            MarkKind::AlertTrigger => "alert triggered",
            MarkKind::AlertResolve => "alert resolved",
            MarkKind::Rotation => "working credential available",
            MarkKind::CredentialChange => "credential changed",
            MarkKind::Restart => "client restarted",
        }
    }
}

/// One instant on a lane.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark {
    /// When.
    pub at: DateTime<Utc>,
    /// Where.
    pub lane: Lane,
    /// What.
    pub kind: MarkKind,
    /// More words (the alert's kind, the step).
    pub note: String,
}

/// A window on a lane: a fault in force, a credential valid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Window {
    /// From.
    pub from: DateTime<Utc>,
    /// Until.
    pub until: DateTime<Utc>,
    /// Where.
    pub lane: Lane,
    /// What, in words (`respond expired_secret on entra token`).
    pub label: String,
}

/// A row of the coverage map: a fault kind, or a credential that no longer works (the timeline
/// ended, replaced or deleted it: not a fault, but the fault the incident was).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultRow {
    /// A fault of this kind shaped the reply.
    Fault(FaultName),
    /// No fault; the token endpoint refused the credential itself.
    Credential,
}

/// A protocol stage a request reached: a column of the coverage map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// The token endpoint, by what it answered.
    Token(TokenAnswer),
    /// SMTP: the connection (banner).
    SmtpConnect,
    /// SMTP `EHLO`/`HELO`.
    SmtpEhlo,
    /// SMTP `STARTTLS`.
    SmtpStartTls,
    /// SMTP `AUTH`.
    SmtpAuth,
    /// SMTP `MAIL FROM`.
    SmtpMail,
    /// SMTP `RCPT TO`.
    SmtpRcpt,
    /// SMTP `DATA` (or `BDAT`) and the message lines.
    SmtpData,
    /// SMTP: the final dot and its reply.
    SmtpAfterDot,
    /// Graph `sendMail`.
    GraphSendMail,
    /// Graph mail delta sync.
    GraphDelta,
    /// Graph applications API (`passwordCredentials`, `keyCredentials`, `addPassword`).
    GraphApplications,
    /// The alert sink.
    AlertSink,
}

/// What the token endpoint answered, as the coverage map splits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TokenAnswer {
    /// 200 with a token.
    Ok,
    /// 401 `invalid_client` (an ended, wrong or unknown credential).
    InvalidClient,
    /// Another 4xx error other than 429 (`unauthorized_client`, `invalid_request`, ...).
    OtherRefusal,
    /// 429.
    Throttled,
    /// 5xx.
    Unavailable,
    /// No reply, a reset or a cut reply.
    NoReply,
}

impl Stage {
    /// Every stage, in the map's column order.
    pub const ALL: [Stage; 18] = [
        Stage::Token(TokenAnswer::Ok),
        Stage::Token(TokenAnswer::InvalidClient),
        Stage::Token(TokenAnswer::OtherRefusal),
        Stage::Token(TokenAnswer::Throttled),
        Stage::Token(TokenAnswer::Unavailable),
        Stage::Token(TokenAnswer::NoReply),
        Stage::SmtpConnect,
        Stage::SmtpEhlo,
        Stage::SmtpStartTls,
        Stage::SmtpAuth,
        Stage::SmtpMail,
        Stage::SmtpRcpt,
        Stage::SmtpData,
        Stage::SmtpAfterDot,
        Stage::GraphSendMail,
        Stage::GraphDelta,
        Stage::GraphApplications,
        Stage::AlertSink,
    ];

    /// Its name in `--require KIND@STAGE` and the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Token(TokenAnswer::Ok) => "token-ok",
            Stage::Token(TokenAnswer::InvalidClient) => "token-invalid-client",
            Stage::Token(TokenAnswer::OtherRefusal) => "token-other-4xx",
            Stage::Token(TokenAnswer::Throttled) => "token-429",
            Stage::Token(TokenAnswer::Unavailable) => "token-5xx",
            Stage::Token(TokenAnswer::NoReply) => "token-no-reply",
            Stage::SmtpConnect => "smtp-connect",
            Stage::SmtpEhlo => "smtp-ehlo",
            Stage::SmtpStartTls => "smtp-starttls",
            Stage::SmtpAuth => "smtp-auth",
            Stage::SmtpMail => "smtp-mail",
            Stage::SmtpRcpt => "smtp-rcpt",
            Stage::SmtpData => "smtp-data",
            Stage::SmtpAfterDot => "smtp-after-dot",
            Stage::GraphSendMail => "graph-sendmail",
            Stage::GraphDelta => "graph-delta",
            Stage::GraphApplications => "graph-applications",
            Stage::AlertSink => "alert-sink",
        }
    }
}

impl FaultRow {
    /// Every row: the fault vocabulary, then the credential.
    pub fn all() -> Vec<FaultRow> {
        let mut rows: Vec<FaultRow> = FaultName::ALL.iter().map(|f| FaultRow::Fault(*f)).collect();
        rows.push(FaultRow::Credential);
        rows
    }

    /// Whether a request at `stage` can be shaped by this row at all: `drop_after_data` only
    /// after the final dot, `tls_failure` only at STARTTLS, `fail_but_deliver` only at Graph
    /// `sendMail`, `malformed_body` only over HTTP, a refused credential only at the token
    /// endpoint's refusals. A cell outside is no blind spot: nothing could fill it.
    pub fn applies_to(self, stage: Stage) -> bool {
        let smtp = matches!(
            stage,
            Stage::SmtpConnect
                | Stage::SmtpEhlo
                | Stage::SmtpStartTls
                | Stage::SmtpAuth
                | Stage::SmtpMail
                | Stage::SmtpRcpt
                | Stage::SmtpData
                | Stage::SmtpAfterDot
        );
        match self {
            FaultRow::Fault(FaultName::DropAfterData) => stage == Stage::SmtpAfterDot,
            FaultRow::Fault(FaultName::TlsFailure) => stage == Stage::SmtpStartTls,
            FaultRow::Fault(FaultName::FailButDeliver) => stage == Stage::GraphSendMail,
            FaultRow::Fault(FaultName::MalformedBody) => !smtp,
            FaultRow::Fault(_) => true,
            FaultRow::Credential => matches!(
                stage,
                Stage::Token(TokenAnswer::InvalidClient | TokenAnswer::OtherRefusal)
            ),
        }
    }

    /// Its name in `--require KIND@STAGE` and the JSON output (the fault's scenario name).
    pub fn name(self) -> &'static str {
        match self {
            FaultRow::Fault(name) => name.as_str(),
            FaultRow::Credential => "credential",
        }
    }
}

/// What a replay showed, for the timeline and the coverage map.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    /// The scenario's start.
    pub start: DateTime<Utc>,
    /// The scenario's end.
    pub end: DateTime<Utc>,
    /// Instants, in time order once [`Trace::finish`] ran.
    pub marks: Vec<Mark>,
    /// Windows.
    pub windows: Vec<Window>,
    /// Outbox depth (submitted, not yet accepted) after each change.
    pub outbox: Vec<(DateTime<Utc>, u64)>,
    /// Each inbound message's arrival and how long until the next successful delta sync
    /// (`None`: none came before the end).
    pub sync_lag: Vec<(DateTime<Utc>, Option<Duration>)>,
    /// Requests a fault (or a refused credential) shaped, by row and stage.
    pub hits: BTreeMap<(FaultRow, Stage), u64>,
}

impl Trace {
    /// Sorts what was collected, so the same run gives the same trace.
    pub fn finish(&mut self) {
        self.marks.sort();
        self.windows.sort();
    }

    /// Drops everything but the coverage hits: what a chaos run keeps of a passing case, whose
    /// timeline no page draws.
    pub fn keep_hits_only(&mut self) {
        self.marks = Vec::new();
        self.windows = Vec::new();
        self.outbox = Vec::new();
        self.sync_lag = Vec::new();
    }
}
