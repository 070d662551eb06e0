//! Faults through the control API: the scenario vocabulary as JSON, in force for a window,
//! the first N requests or with a probability; listed with how often they matched.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Answer, Inner, Problem, json, no_content};
use crate::fault::{
    Activation, CatalogueReply, Fault, FaultError, FaultId, FaultKind, FaultName, FaultWords,
    InjectedFault, Target,
};
use crate::mock::HttpMocks;
use crate::scenario::file::HumanDuration;
use crate::time::Clock as _;

/// A fault to inject: the words of a scenario's `fault` step, plus when it applies.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"target": "entra", "kind": "respond",
    "reply": "throttled", "operation": "token", "first": 1, "retry_after": "7"}))]
pub struct NewFault {
    /// The service.
    pub target: Target,
    /// What the fault does.
    pub kind: FaultName,
    /// Only this operation (`token`, `send-mail`, `delta`, `end-of-data`, ...); default every
    /// one.
    pub operation: Option<String>,
    /// `respond` and `fail_but_deliver`: the catalogue reply key.
    pub reply: Option<String>,
    /// `respond` and `fail_but_deliver`: the `Retry-After` to send instead of the
    /// catalogue's (`""` removes it).
    pub retry_after: Option<String>,
    /// `latency`: the added delay (default 30s, at most 365d).
    pub delay: Option<HumanDuration>,
    /// `limit_data`: the bytes of each reply that get through.
    #[serde(default, deserialize_with = "count")]
    pub bytes: Option<u64>,
    /// `bandwidth`: bytes per second.
    #[serde(default, deserialize_with = "count")]
    pub bytes_per_second: Option<u64>,
    /// In force from this instant (default now).
    pub from: Option<DateTime<Utc>>,
    /// In force before this instant (default until cleared).
    pub until: Option<DateTime<Utc>>,
    /// In force for this long from `from` (instead of `until`).
    pub duration: Option<HumanDuration>,
    /// Only the first N matching requests.
    #[serde(default, deserialize_with = "count")]
    pub first: Option<u64>,
    /// Each matching request with this probability, drawn from the seed.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub probability: Option<f64>,
    /// Only requests of this app (client id): token requests naming it, Graph calls and SMTP
    /// sessions with its tokens. Not for `alerts`.
    pub app: Option<String>,
    /// Only requests for this mailbox (UPN): Graph calls under `/users/{upn}` and SMTP
    /// sessions from their `AUTH` on. Not for `alerts`.
    pub mailbox: Option<String>,
}

/// A count, also when it comes as an integral float (`10.0`): JSON Schema's `integer` (which
/// the document promises) admits those, and so do JSON encoders that write every number so.
fn count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = |f: f64| f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f);
    number
        .as_u64()
        .or_else(|| number.as_f64().filter(|f| whole(*f)).map(|f| f as u64))
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!("expected a whole number at least 0, got {number}"))
        })
}

/// The longest `latency` delay: past it a fault's deadline could leave the monotonic clock's
/// range, and `timeout` is the fault for a reply that never comes.
const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// A fault in force.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct FaultView {
    /// Its id (`DELETE faults/{id}` clears it).
    pub id: u64,
    /// The service.
    pub target: Target,
    /// What it does.
    pub kind: FaultName,
    /// The operation it is limited to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The catalogue reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// The `Retry-After` it sends instead of the catalogue's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<String>,
    /// The added delay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<HumanDuration>,
    /// The bytes of each reply that get through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The rate replies trickle at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<u64>,
    /// In force from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    /// In force before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// Only the first N matching requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<u64>,
    /// The probability per matching request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// The app it is scoped to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The mailbox it is scoped to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<String>,
    /// Matching requests so far.
    pub matched: u64,
}

/// The faults in force.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct FaultsView {
    /// In injection order: the first that applies to a request wins.
    pub faults: Vec<FaultView>,
}

fn view(injected: &InjectedFault) -> FaultView {
    let fault = &injected.fault;
    let (mut reply, mut retry_after, mut delay, mut bytes, mut rate) =
        (None, None, None, None, None);
    match &fault.kind {
        FaultKind::Latency { delay: d } => delay = Some(HumanDuration(*d)),
        FaultKind::LimitData { bytes: b } => bytes = Some(*b as u64),
        FaultKind::Bandwidth { bytes_per_second } => rate = Some(*bytes_per_second),
        FaultKind::Respond {
            reply: r,
            retry_after: a,
        }
        | FaultKind::FailButDeliver {
            reply: r,
            retry_after: a,
        } => {
            reply = Some(r.key().to_string());
            retry_after.clone_from(a);
        }
        FaultKind::Timeout
        | FaultKind::ResetPeer
        | FaultKind::MalformedBody
        | FaultKind::DropAfterData
        | FaultKind::TlsFailure => {}
    }
    FaultView {
        id: injected.id.number(),
        target: fault.target,
        kind: fault.kind.name(),
        operation: fault.operation.clone(),
        reply,
        retry_after,
        delay,
        bytes,
        bytes_per_second: rate,
        from: fault.activation.from,
        until: fault.activation.until,
        first: fault.activation.first,
        probability: fault.activation.probability,
        app: fault.activation.app.clone(),
        mailbox: fault.activation.mailbox.clone(),
        matched: injected.matched,
    }
}

pub(super) fn list(mocks: &HttpMocks) -> FaultsView {
    FaultsView {
        faults: mocks.fault_list().iter().map(view).collect(),
    }
}

/// The fault a call describes, checked whole before anything is injected.
fn lower(new: &NewFault, now: DateTime<Utc>) -> Result<Fault, Problem> {
    if new.delay.is_some_and(|d| d.0 > MAX_DELAY) {
        return Err(Problem::invalid(
            "delay",
            "a latency fault waits at most 365d",
        ));
    }
    let words = FaultWords {
        reply: new.reply.as_deref(),
        retry_after: new.retry_after.as_deref(),
        delay: new.delay.map(|d| d.0),
        bytes: new.bytes,
        bytes_per_second: new.bytes_per_second,
        ..FaultWords::of(new.kind)
    };
    let kind = words.lower(new.target).map_err(|e| {
        let problem = Problem::invalid(e.field, e.message);
        if e.field == "reply" {
            problem.with_valid(CatalogueReply::keys(new.target))
        } else {
            problem
        }
    })?;
    let from = new.from.unwrap_or(now);
    let until = match (new.until, new.duration) {
        (Some(_), Some(_)) => {
            return Err(Problem::invalid(
                "duration",
                "give `until` or `duration`, not both",
            ));
        }
        (until, None) => until,
        (None, Some(d)) => Some(super::apps::later(from, d.0, "duration")?),
    };
    if until.is_some_and(|until| until <= from) {
        return Err(Problem::invalid(
            "until",
            "the window must end after it starts",
        ));
    }
    let fault = Fault {
        target: new.target,
        operation: new.operation.clone(),
        kind,
        activation: Activation {
            from: Some(from),
            until,
            first: new.first,
            probability: new.probability,
            app: new.app.clone(),
            mailbox: new.mailbox.clone(),
        },
    };
    fault.validate().map_err(|e| {
        let field = match e {
            FaultError::Probability(_) => "probability",
            FaultError::ZeroBandwidth => "bytes_per_second",
            FaultError::UnknownReply { .. } => "reply",
            FaultError::FailButDeliverTarget | FaultError::WrongTarget { .. } => "kind",
            FaultError::ScopedAlerts if new.app.is_some() => "app",
            FaultError::ScopedAlerts => "mailbox",
        };
        Problem::invalid(field, e.to_string())
    })?;
    Ok(fault)
}

pub(super) fn inject(inner: &Inner, new: NewFault) -> Answer {
    let fault = lower(&new, inner.clock.now_utc())?;
    let mocks = &inner.parts.mocks;
    let id = mocks
        .inject(fault.clone())
        .map_err(|e| Problem::invalid("kind", e.to_string()))?;
    let injected = InjectedFault {
        id,
        fault,
        matched: 0,
    };
    Ok(json(201, &view(&injected)))
}

pub(super) fn clear(mocks: &HttpMocks, id: &str) -> Answer {
    let number: u64 = id
        .parse()
        .map_err(|_| Problem::invalid("id", format!("`{id}` is not a fault id (a number)")))?;
    if mocks.clear(FaultId::from_number(number)) {
        Ok(no_content())
    } else {
        Err(Problem::not_found(
            Some("id"),
            format!("no fault {number} in force"),
        ))
    }
}
