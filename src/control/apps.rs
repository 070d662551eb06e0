//! The clock and the app registrations' secrets, read and changed as the Graph applications
//! API and the scenario timeline change them.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::{Answer, Inner, Problem, json, no_content};
use crate::scenario::file::HumanDuration;
use crate::tenant::{CredentialState, Directory, PasswordCredential, SecretSpec};
use crate::time::{CalendarClock, Clock as _};

/// The mocks' calendar.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ClockView {
    /// The calendar instant every mock reads.
    pub now: DateTime<Utc>,
    /// The instant it started at (where a reset puts it).
    pub start: DateTime<Utc>,
}

/// How far to move the calendar: give exactly one of `by` and `to`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"required": ["by"], "properties": {"by": {"type": "string"}, "to": {"type": "null"}}},
    {"required": ["to"], "properties": {"to": {"type": "string"}, "by": {"type": "null"}}},
]))]
#[schemars(example = serde_json::json!({"by": "5m"}))]
pub struct Advance {
    /// A duration such as `5m` or `29d`.
    pub by: Option<HumanDuration>,
    /// An instant (RFC 3339) not before the clock's.
    pub to: Option<DateTime<Utc>>,
}

pub(super) fn clock(clock: &CalendarClock) -> ClockView {
    ClockView {
        now: clock.now_utc(),
        start: clock.start(),
    }
}

/// The latest instant the calendar may be moved to: a year before RFC 3339's last, so that it
/// can run on, and the mocks add token lifetimes and secret ends to it, without leaving the
/// four-digit years every instant is written with.
pub(super) fn calendar_end() -> DateTime<Utc> {
    DateTime::from_timestamp(253_370_764_800, 0).expect("9999-01-01T00:00:00Z is an instant")
}

/// The last instant with a four-digit year: no secret or fault window ends later.
pub(super) fn last_instant() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_300_799, 0).expect("9999-12-31T23:59:59Z is an instant")
}

/// `start` plus `duration`, if that is not after [`last_instant`]; else a problem at `field`.
pub(super) fn later(
    start: DateTime<Utc>,
    duration: std::time::Duration,
    field: &str,
) -> Result<DateTime<Utc>, Problem> {
    TimeDelta::from_std(duration)
        .ok()
        .and_then(|d| start.checked_add_signed(d))
        .filter(|end| *end <= last_instant())
        .ok_or_else(|| {
            Problem::invalid(
                field,
                format!(
                    "`{field}` reaches past {}",
                    crate::time::rfc3339(last_instant())
                ),
            )
        })
}

pub(super) fn advance(clock: &CalendarClock, advance: Advance) -> Answer {
    let now = clock.now_utc();
    let to = match (advance.by, advance.to) {
        (Some(by), None) => later(now, by.0, "by")
            .ok()
            .filter(|to| *to <= calendar_end())
            .ok_or_else(|| {
                Problem::conflict(
                    "by",
                    format!(
                        "the calendar stops at {}; it reads {}",
                        crate::time::rfc3339(calendar_end()),
                        crate::time::rfc3339(now)
                    ),
                )
            })?,
        (None, Some(to)) if to > calendar_end() => {
            return Err(Problem::invalid(
                "to",
                format!(
                    "the calendar stops at {}",
                    crate::time::rfc3339(calendar_end())
                ),
            ));
        }
        (None, Some(to)) => to,
        _ => return Err(Problem::invalid("by", "give exactly one of `by` and `to`")),
    };
    let by = (to - now).to_std().map_err(|_| {
        Problem::conflict(
            "to",
            format!(
                "the clock moves forward only; it reads {}",
                crate::time::rfc3339(now)
            ),
        )
    })?;
    clock.advance(by);
    Ok(json(200, &self::clock(clock)))
}

/// Every app registration.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AppsView {
    /// In tenant order, then registration order.
    pub apps: Vec<AppView>,
}

/// An app registration and its secrets.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AppView {
    /// The tenant it is registered in.
    pub tenant_id: String,
    /// `appId`, the client id.
    pub app_id: String,
    /// The application object's `id`.
    pub object_id: String,
    /// `displayName`.
    pub display_name: String,
    /// `passwordCredentials`, oldest first.
    pub secrets: Vec<SecretView>,
}

/// A secret's metadata (never its value).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SecretView {
    /// `keyId`.
    pub key_id: String,
    /// `displayName`.
    pub display_name: String,
    /// `hint`: its first three characters.
    pub hint: String,
    /// `startDateTime`.
    pub start: DateTime<Utc>,
    /// `endDateTime`.
    pub end: DateTime<Utc>,
    /// Whether the token endpoint takes it now.
    pub state: SecretState,
}

/// Where a secret stands now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecretState {
    /// The token endpoint takes it.
    Valid,
    /// Added less than the tenant's propagation delay ago: refused for now.
    Propagating,
    /// Before its start.
    NotYetValid,
    /// At or after its end.
    Expired,
}

/// A secret to add: generated unless `value` is given.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"display_name": "rotated", "lifetime": "730d"}))]
pub struct NewSecret {
    /// `displayName` (default `maildrill control`).
    pub display_name: Option<String>,
    /// The value, when the test wants to choose it (e.g. to paste into its client).
    pub value: Option<String>,
    /// `startDateTime` (default now).
    pub start: Option<DateTime<Utc>>,
    /// `endDateTime`; default `start` plus `lifetime`.
    pub end: Option<DateTime<Utc>>,
    /// How long it lasts when `end` is not given (default 180d, the portal's default).
    pub lifetime: Option<HumanDuration>,
}

/// An added secret: its metadata, and its text this once.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AddedSecret {
    /// The app it belongs to.
    pub app_id: String,
    /// Its metadata.
    #[serde(flatten)]
    pub secret: SecretView,
    /// The value (Graph's `secretText`): shown in this response only.
    pub secret_text: String,
}

fn view(
    credential: &PasswordCredential,
    now: DateTime<Utc>,
    propagation: std::time::Duration,
) -> SecretView {
    SecretView {
        key_id: credential.key_id.clone(),
        display_name: credential.display_name.clone(),
        hint: credential.hint.clone(),
        start: credential.start,
        end: credential.end,
        state: match credential.state_at(now, propagation) {
            CredentialState::Valid => SecretState::Valid,
            CredentialState::Propagating => SecretState::Propagating,
            CredentialState::NotYetValid => SecretState::NotYetValid,
            CredentialState::Expired => SecretState::Expired,
        },
    }
}

pub(super) fn list(inner: &Inner) -> AppsView {
    let now = inner.clock.now_utc();
    let directory = Directory::lock(&inner.parts.directory);
    let apps = directory
        .tenants()
        .iter()
        .flat_map(|tenant| {
            tenant.apps.iter().map(move |app| AppView {
                tenant_id: tenant.id.clone(),
                app_id: app.app_id.clone(),
                object_id: app.object_id.clone(),
                display_name: app.display_name.clone(),
                secrets: app
                    .credentials
                    .iter()
                    .map(|c| view(c, now, tenant.settings.propagation_delay))
                    .collect(),
            })
        })
        .collect();
    AppsView { apps }
}

/// The tenant an app (by `appId` or object id) is registered in, and its `appId`.
fn find_app(
    directory: &Directory,
    app: &str,
) -> Result<(String, String, std::time::Duration), Problem> {
    directory
        .tenants()
        .iter()
        .find_map(|tenant| {
            tenant.app(app).map(|found| {
                (
                    tenant.id.clone(),
                    found.app_id.clone(),
                    tenant.settings.propagation_delay,
                )
            })
        })
        .ok_or_else(|| {
            Problem::not_found(
                Some("app"),
                format!("no app registration `{app}` (GET apps lists them)"),
            )
        })
}

/// A secret's lifetime when the call gives neither `end` nor `lifetime`: the portal's default.
const DEFAULT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(180 * 24 * 3600);

/// Checks a new secret's dates and value before anything changes.
fn secret_spec(new: NewSecret, now: DateTime<Utc>) -> Result<SecretSpec, Problem> {
    let start = new.start.unwrap_or(now);
    let end = match (new.end, new.lifetime) {
        (Some(_), Some(_)) => {
            return Err(Problem::invalid(
                "lifetime",
                "give `end` or `lifetime`, not both",
            ));
        }
        (Some(end), None) => end,
        (None, lifetime) => later(
            start,
            lifetime.map_or(DEFAULT_LIFETIME, |l| l.0),
            "lifetime",
        )?,
    };
    if end <= start {
        return Err(Problem::invalid("end", "a secret must end after it starts"));
    }
    if end > last_instant() {
        return Err(Problem::invalid(
            "end",
            format!("a secret ends by {}", crate::time::rfc3339(last_instant())),
        ));
    }
    if new.value.as_deref().is_some_and(str::is_empty) {
        return Err(Problem::invalid("value", "a secret value cannot be empty"));
    }
    Ok(SecretSpec {
        value: new.value.unwrap_or_default(),
        display_name: new
            .display_name
            .unwrap_or_else(|| "maildrill control".into()),
        start,
        end,
    })
}

pub(super) fn add(inner: &Inner, app: &str, new: NewSecret) -> Answer {
    let now = inner.clock.now_utc();
    let mut directory = Directory::lock(&inner.parts.directory);
    let (tenant, app_id, propagation) = find_app(&directory, app)?;
    let spec = secret_spec(new, now)?;
    let added = if spec.value.is_empty() {
        directory.generate_secret(
            &tenant,
            &app_id,
            &spec.display_name,
            spec.start,
            spec.end,
            now,
        )
    } else {
        directory
            .add_secret(&tenant, &app_id, &spec, now)
            .map(|c| (c, spec.value.clone()))
    };
    let (credential, text) = added.expect("the app was found under this lock");
    Ok(json(
        201,
        &AddedSecret {
            app_id,
            secret: view(&credential, now, propagation),
            secret_text: text,
        },
    ))
}

pub(super) fn expire(inner: &Inner, app: &str, key: &str) -> Answer {
    let now = inner.clock.now_utc();
    let mut directory = Directory::lock(&inner.parts.directory);
    let (tenant, app_id, propagation) = find_app(&directory, app)?;
    if !directory.set_secret_end(&tenant, &app_id, key, now) {
        return Err(no_key(key));
    }
    let credential = directory
        .app(&tenant, &app_id)
        .and_then(|a| {
            a.credentials
                .iter()
                .find(|c| c.key_id.eq_ignore_ascii_case(key))
        })
        .expect("the secret was just changed under this lock");
    Ok(json(200, &view(credential, now, propagation)))
}

pub(super) fn remove(inner: &Inner, app: &str, key: &str) -> Answer {
    let mut directory = Directory::lock(&inner.parts.directory);
    let (tenant, app_id, _) = find_app(&directory, app)?;
    if directory.remove_secret(&tenant, &app_id, key) {
        Ok(no_content())
    } else {
        Err(no_key(key))
    }
}

fn no_key(key: &str) -> Problem {
    Problem::not_found(
        Some("key"),
        format!("the app has no secret with keyId `{key}`"),
    )
}
