//! The fault vocabulary and when a fault applies.
//!
//! Names follow toxiproxy where the meaning matches (`latency`, `timeout`, `reset_peer`,
//! `limit_data`); the protocol-aware faults (`respond` with a catalogue reply, `malformed_body`,
//! `fail_but_deliver`) are what a TCP proxy cannot do. Unlike toxiproxy, every fault is active
//! only in a window of virtual time, for the first N matching requests, or with a probability
//! drawn from the seed, so a schedule replays to the same bytes.

mod words;

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::mock::wire::{EntraError, GraphError};
use crate::seed::{Seed, SeedRng};

pub use words::{DEFAULT_LATENCY, FaultName, FaultWords, WordError};

/// Which service a fault targets.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The Entra token endpoint (and discovery).
    Entra,
    /// Microsoft Graph.
    Graph,
    /// The SMTP submission server.
    Smtp,
    /// The alert sink.
    Alerts,
}

impl Target {
    /// The name used in scenario files and journals.
    pub fn name(self) -> &'static str {
        match self {
            Target::Entra => "entra",
            Target::Graph => "graph",
            Target::Smtp => "smtp",
            Target::Alerts => "alerts",
        }
    }
}

/// A reply from the wire catalogue, to send instead of the real one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogueReply {
    /// An Entra error envelope.
    Entra(EntraError),
    /// The token endpoint's plain-text `429` with `Retry-After: 60`.
    EntraThrottled,
    /// A Graph error envelope.
    Graph(GraphError),
    /// The raw IIS `503` HTML page.
    GraphHtmlUnavailable,
    /// An SMTP reply from `fixtures/wire/smtp.toml`, by key (a `421` also closes the session).
    Smtp(&'static str),
}

impl CatalogueReply {
    /// Resolves a catalogue key for a target: `throttled` and the error keys of
    /// `fixtures/wire/entra.toml` for Entra, `html_unavailable` and the error keys of
    /// `fixtures/wire/graph.toml` for Graph.
    pub fn parse(target: Target, key: &str) -> Result<CatalogueReply, FaultError> {
        let found = match target {
            Target::Entra if key == "throttled" => Some(CatalogueReply::EntraThrottled),
            Target::Entra => EntraError::from_key(key).map(CatalogueReply::Entra),
            Target::Graph if key == "html_unavailable" => {
                Some(CatalogueReply::GraphHtmlUnavailable)
            }
            Target::Graph => GraphError::from_key(key).map(CatalogueReply::Graph),
            Target::Smtp => crate::mock::smtp::replies::KEYS
                .iter()
                .find(|k| **k == key)
                .map(|k| CatalogueReply::Smtp(k)),
            Target::Alerts => None,
        };
        found.ok_or_else(|| FaultError::UnknownReply {
            target,
            key: key.to_string(),
        })
    }

    /// The catalogue key.
    pub fn key(self) -> &'static str {
        match self {
            CatalogueReply::Entra(e) => e.key(),
            CatalogueReply::EntraThrottled => "throttled",
            CatalogueReply::Graph(e) => e.key(),
            CatalogueReply::GraphHtmlUnavailable => "html_unavailable",
            CatalogueReply::Smtp(key) => key,
        }
    }
}

/// What a fault does to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Answer after an extra delay on the virtual clock (toxiproxy `latency`).
    Latency {
        /// The added delay.
        delay: Duration,
    },
    /// Never answer; the client gives up on its own timeout (toxiproxy `timeout` with 0).
    Timeout,
    /// Close the connection without a reply (toxiproxy `reset_peer`).
    ResetPeer,
    /// Send only the first `bytes` bytes of the reply, then close (toxiproxy `limit_data`).
    LimitData {
        /// Bytes of the serialised response that get through.
        bytes: usize,
    },
    /// Answer with a catalogue reply instead of the real one.
    Respond {
        /// The reply.
        reply: CatalogueReply,
        /// Overrides `Retry-After` (`Some("")` removes it), e.g. `"0.249"` or `"120"`.
        retry_after: Option<String>,
    },
    /// Answer `200` with a body that is not what the client expects (cut JSON).
    MalformedBody,
    /// Stretch each reply by the bytes it carries at this rate on the virtual clock
    /// (toxiproxy `bandwidth`): slow reads and slow links.
    Bandwidth {
        /// Bytes per second.
        bytes_per_second: u64,
    },
    /// SMTP: store the message, then drop the connection before replying to the final dot:
    /// the client never hears, the classic duplicate-send case.
    DropAfterData,
    /// SMTP: answer STARTTLS with `220`, then fail the TLS handshake.
    TlsFailure,
    /// `sendMail` stores the message, then answers with a catalogue error: the duplicate-send
    /// trap of a non-idempotent API.
    FailButDeliver {
        /// The reply the client sees.
        reply: CatalogueReply,
        /// Overrides `Retry-After`.
        retry_after: Option<String>,
    },
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::Latency { delay } => {
                write!(f, "latency {}", humantime::format_duration(*delay))
            }
            FaultKind::Timeout => f.write_str("timeout"),
            FaultKind::ResetPeer => f.write_str("reset_peer"),
            FaultKind::LimitData { bytes } => write!(f, "limit_data {bytes}"),
            FaultKind::Respond { reply, .. } => write!(f, "respond {}", reply.key()),
            FaultKind::MalformedBody => f.write_str("malformed_body"),
            FaultKind::Bandwidth { bytes_per_second } => write!(f, "bandwidth {bytes_per_second}"),
            FaultKind::DropAfterData => f.write_str("drop_after_data"),
            FaultKind::TlsFailure => f.write_str("tls_failure"),
            FaultKind::FailButDeliver { reply, .. } => {
                write!(f, "fail_but_deliver {}", reply.key())
            }
        }
    }
}

/// When and to whom a fault applies. Every condition given must hold; none given means always.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Activation {
    /// Active from this virtual instant on.
    pub from: Option<DateTime<Utc>>,
    /// Active before this virtual instant.
    pub until: Option<DateTime<Utc>>,
    /// Only the first N matching requests (inside the window) are affected.
    pub first: Option<u64>,
    /// Each matching request is affected with this probability, drawn from the seed.
    pub probability: Option<f64>,
    /// Only requests of this app (client id, case-insensitive): token requests naming it,
    /// Graph calls and SMTP sessions with its tokens.
    pub app: Option<String>,
    /// Only requests for this mailbox (UPN, case-insensitive): Graph calls under
    /// `/users/{upn}` and SMTP sessions authenticated as it.
    pub mailbox: Option<String>,
}

/// Who a request comes from and for, as far as the mock can tell when it decides: a token
/// request names its app but no mailbox, an SMTP session names neither before `AUTH`. A fault
/// scoped to an app or a mailbox applies only where the request names that app or mailbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Party<'a> {
    /// The client id.
    pub app: Option<&'a str>,
    /// The mailbox's UPN.
    pub mailbox: Option<&'a str>,
}

impl Activation {
    /// Whether a request of `party` is one this fault is scoped to.
    fn covers(&self, party: Party<'_>) -> bool {
        let named = |scope: &Option<String>, seen: Option<&str>| {
            scope
                .as_deref()
                .is_none_or(|want| seen.is_some_and(|seen| seen.eq_ignore_ascii_case(want)))
        };
        named(&self.app, party.app) && named(&self.mailbox, party.mailbox)
    }
}

/// A fault: what, where, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// The targeted service.
    pub target: Target,
    /// Only this operation (e.g. `token`, `send-mail`, `delta`); `None` means every one.
    pub operation: Option<String>,
    /// The effect.
    pub kind: FaultKind,
    /// When it applies.
    pub activation: Activation,
}

/// A fault that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    /// The reply key is not in the target's catalogue.
    #[error("`{key}` is not a reply in the {} catalogue", target.name())]
    UnknownReply {
        /// The target.
        target: Target,
        /// The key given.
        key: String,
    },
    /// `fail_but_deliver` only makes sense for Graph `sendMail`.
    #[error("fail_but_deliver applies to graph send-mail only")]
    FailButDeliverTarget,
    /// A fault that exists for one protocol only.
    #[error("{kind} does not apply to {}", target.name())]
    WrongTarget {
        /// The fault's name.
        kind: String,
        /// The target given.
        target: Target,
    },
    /// A bandwidth that lets nothing through (use `timeout` for that).
    #[error(
        "bandwidth must be at least 1 byte per second (a link that carries nothing is a timeout)"
    )]
    ZeroBandwidth,
    /// The alert sink's requests name no app or mailbox.
    #[error("a fault on alerts cannot be scoped to an app or a mailbox")]
    ScopedAlerts,
    /// A probability outside `[0, 1]`.
    #[error("probability {0} is not between 0 and 1")]
    Probability(String),
}

impl Fault {
    /// Checks that the fault makes sense for its target.
    pub fn validate(&self) -> Result<(), FaultError> {
        if let FaultKind::FailButDeliver { .. } = self.kind
            && (self.target != Target::Graph
                || self
                    .operation
                    .as_deref()
                    .is_some_and(|op| op != "send-mail"))
        {
            return Err(FaultError::FailButDeliverTarget);
        }
        let smtp_only = matches!(self.kind, FaultKind::DropAfterData | FaultKind::TlsFailure);
        let http_only = matches!(self.kind, FaultKind::MalformedBody);
        if (smtp_only && self.target != Target::Smtp) || (http_only && self.target == Target::Smtp)
        {
            return Err(FaultError::WrongTarget {
                kind: self.kind.to_string(),
                target: self.target,
            });
        }
        if let FaultKind::Respond { reply, .. } | FaultKind::FailButDeliver { reply, .. } =
            &self.kind
        {
            let fits = match reply {
                CatalogueReply::Entra(_) | CatalogueReply::EntraThrottled => {
                    self.target == Target::Entra
                }
                CatalogueReply::Graph(_) | CatalogueReply::GraphHtmlUnavailable => {
                    self.target == Target::Graph
                }
                CatalogueReply::Smtp(_) => self.target == Target::Smtp,
            };
            if !fits {
                return Err(FaultError::WrongTarget {
                    kind: self.kind.to_string(),
                    target: self.target,
                });
            }
        }
        if let FaultKind::Bandwidth {
            bytes_per_second: 0,
        } = self.kind
        {
            return Err(FaultError::ZeroBandwidth);
        }
        let scoped = self.activation.app.is_some() || self.activation.mailbox.is_some();
        if scoped && self.target == Target::Alerts {
            return Err(FaultError::ScopedAlerts);
        }
        if let Some(p) = self.activation.probability
            && !(0.0..=1.0).contains(&p)
        {
            return Err(FaultError::Probability(p.to_string()));
        }
        Ok(())
    }
}

/// Identifies an injected fault, to clear it later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FaultId(u64);

impl FaultId {
    /// The id as a number (the control API's `id`).
    pub fn number(self) -> u64 {
        self.0
    }

    /// The id a number names (it may name no fault in force).
    pub fn from_number(number: u64) -> FaultId {
        FaultId(number)
    }
}

/// A fault in force, as listed: its id, the fault, and how many requests it has matched.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectedFault {
    /// Its id.
    pub id: FaultId,
    /// The fault.
    pub fault: Fault,
    /// Matching requests so far (inside its window), counted against `first`.
    pub matched: u64,
}

#[derive(Debug)]
struct Slot {
    id: FaultId,
    fault: Fault,
    matched: u64,
}

/// A fault set shared by every mock of a run, so one schedule drives them all.
pub type SharedFaults = std::sync::Arc<std::sync::Mutex<FaultSet>>;

/// The faults in force, in injection order; the first that applies wins.
#[derive(Debug)]
pub struct FaultSet {
    slots: Vec<Slot>,
    next_id: u64,
    rng: SeedRng,
}

impl FaultSet {
    /// An empty set drawing probabilities from `seed`.
    pub fn new(seed: Seed) -> FaultSet {
        FaultSet {
            slots: Vec::new(),
            next_id: 1,
            rng: seed.stream("faults"),
        }
    }

    /// Adds a fault.
    pub fn inject(&mut self, fault: Fault) -> Result<FaultId, FaultError> {
        fault.validate()?;
        let id = FaultId(self.next_id);
        self.next_id += 1;
        self.slots.push(Slot {
            id,
            fault,
            matched: 0,
        });
        Ok(id)
    }

    /// Removes a fault; false when it was not there.
    pub fn clear(&mut self, id: FaultId) -> bool {
        let before = self.slots.len();
        self.slots.retain(|s| s.id != id);
        before != self.slots.len()
    }

    /// Removes every fault on `target`.
    pub fn clear_target(&mut self, target: Target) {
        self.slots.retain(|s| s.fault.target != target);
    }

    /// Removes every fault.
    pub fn clear_all(&mut self) {
        self.slots.clear();
    }

    /// Whether a fault in force is scoped to an app or a mailbox: only then does a mock need
    /// to find out who a request is from before it decides.
    pub fn any_scoped(&self) -> bool {
        self.slots
            .iter()
            .any(|s| s.fault.activation.app.is_some() || s.fault.activation.mailbox.is_some())
    }

    /// The faults in force, in injection order.
    pub fn list(&self) -> Vec<InjectedFault> {
        self.slots
            .iter()
            .map(|s| InjectedFault {
                id: s.id,
                fault: s.fault.clone(),
                matched: s.matched,
            })
            .collect()
    }

    /// The fault that applies to this request of `party`, if any, counting it against
    /// `first`.
    pub fn decide(
        &mut self,
        target: Target,
        operation: &str,
        party: Party<'_>,
        now: DateTime<Utc>,
    ) -> Option<FaultKind> {
        for slot in &mut self.slots {
            let fault = &slot.fault;
            let matches = fault.target == target
                && fault.operation.as_deref().is_none_or(|op| op == operation)
                && fault.activation.covers(party)
                && fault.activation.from.is_none_or(|from| now >= from)
                && fault.activation.until.is_none_or(|until| now < until);
            if !matches {
                continue;
            }
            slot.matched += 1;
            if fault.activation.first.is_some_and(|n| slot.matched > n) {
                continue;
            }
            if let Some(p) = fault.activation.probability
                && !self.rng.chance(p)
            {
                continue;
            }
            return Some(fault.kind.clone());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn throttle(activation: Activation) -> Fault {
        Fault {
            target: Target::Entra,
            operation: Some("token".into()),
            kind: FaultKind::Respond {
                reply: CatalogueReply::EntraThrottled,
                retry_after: None,
            },
            activation,
        }
    }

    #[test]
    fn window_bounds_are_inclusive_start_exclusive_end() {
        let mut set = FaultSet::new(Seed(1));
        set.inject(throttle(Activation {
            from: Some(at("2025-02-14T11:30:00Z")),
            until: Some(at("2025-02-14T12:00:00Z")),
            ..Activation::default()
        }))
        .unwrap();
        assert!(
            set.decide(
                Target::Entra,
                "token",
                Party::default(),
                at("2025-02-14T11:29:59Z")
            )
            .is_none()
        );
        assert!(
            set.decide(
                Target::Entra,
                "token",
                Party::default(),
                at("2025-02-14T11:30:00Z")
            )
            .is_some()
        );
        assert!(
            set.decide(
                Target::Graph,
                "token",
                Party::default(),
                at("2025-02-14T11:30:00Z")
            )
            .is_none()
        );
        assert!(
            set.decide(
                Target::Entra,
                "token",
                Party::default(),
                at("2025-02-14T12:00:00Z")
            )
            .is_none()
        );
    }

    #[test]
    fn first_n_counts_matching_requests_only() {
        let mut set = FaultSet::new(Seed(1));
        set.inject(throttle(Activation {
            first: Some(2),
            ..Activation::default()
        }))
        .unwrap();
        let now = at("2025-01-01T00:00:00Z");
        assert!(
            set.decide(Target::Entra, "discovery", Party::default(), now)
                .is_none()
        );
        assert!(
            set.decide(Target::Entra, "token", Party::default(), now)
                .is_some()
        );
        assert!(
            set.decide(Target::Entra, "token", Party::default(), now)
                .is_some()
        );
        assert!(
            set.decide(Target::Entra, "token", Party::default(), now)
                .is_none()
        );
    }

    #[test]
    fn probability_is_seeded() {
        let draw = |seed| {
            let mut set = FaultSet::new(Seed(seed));
            set.inject(throttle(Activation {
                probability: Some(0.5),
                ..Activation::default()
            }))
            .unwrap();
            let now = at("2025-01-01T00:00:00Z");
            (0..64)
                .map(|_| {
                    set.decide(Target::Entra, "token", Party::default(), now)
                        .is_some()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(9), draw(9));
        let hits = draw(9).iter().filter(|h| **h).count();
        assert!((16..48).contains(&hits), "{hits} of 64");
    }

    #[test]
    fn unknown_reply_keys_and_misplaced_faults_are_refused() {
        assert!(CatalogueReply::parse(Target::Entra, "expired_secret").is_ok());
        assert!(CatalogueReply::parse(Target::Entra, "mailbox_concurrency").is_err());
        let fault = Fault {
            target: Target::Entra,
            operation: None,
            kind: FaultKind::FailButDeliver {
                reply: CatalogueReply::Graph(GraphError::GatewayTimeout),
                retry_after: None,
            },
            activation: Activation::default(),
        };
        assert_eq!(fault.validate(), Err(FaultError::FailButDeliverTarget));
    }

    #[test]
    fn a_scoped_fault_applies_only_where_the_request_names_its_app_and_mailbox() {
        let mut set = FaultSet::new(Seed(1));
        set.inject(throttle(Activation {
            app: Some("9B2E-app".into()),
            mailbox: Some("ops@contoso.example".into()),
            ..Activation::default()
        }))
        .unwrap();
        let now = at("2025-01-01T00:00:00Z");
        let party = |app, mailbox| Party { app, mailbox };
        let both = party(Some("9b2e-APP"), Some("OPS@contoso.example"));
        assert!(set.decide(Target::Entra, "token", both, now).is_some());
        let other_mailbox = party(Some("9b2e-app"), Some("sales@contoso.example"));
        assert!(
            set.decide(Target::Entra, "token", other_mailbox, now)
                .is_none()
        );
        let unnamed = party(Some("9b2e-app"), None);
        assert!(set.decide(Target::Entra, "token", unnamed, now).is_none());
        assert!(
            set.decide(Target::Entra, "token", Party::default(), now)
                .is_none()
        );
    }

    #[test]
    fn faults_on_alerts_are_not_scoped() {
        let fault = Fault {
            target: Target::Alerts,
            operation: None,
            kind: FaultKind::Timeout,
            activation: Activation {
                mailbox: Some("ops@contoso.example".into()),
                ..Activation::default()
            },
        };
        assert_eq!(fault.validate(), Err(FaultError::ScopedAlerts));
    }
}
