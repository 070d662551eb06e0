//! The scenario file format on disk (TOML) and its errors.
//!
//! Unknown keys are errors, and every error names the file, line, column and key and says what
//! was expected; loading never panics. Lowering turns the file into the tenant the mocks serve.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::vocab::{Direction, FaultName, StepAction, Transport};
use crate::check::{CheckId, Grade};
use crate::fault::Target;
use crate::seed::Seed;
use crate::subject::Profile;
use crate::tenant::certificate::TEST_KEYS;
use crate::tenant::{
    AppPolicy, AppSpec, CertificateSpec, MailboxSpec, Resource, SecretSpec, SignInAudience,
    TenantSettings, TenantSpec,
};

/// A scenario file as written.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// A short name.
    pub name: String,
    /// What the scenario shows.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The seed of every random choice in the run.
    #[serde(default)]
    pub seed: u64,
    /// The calendar instant the replay starts at (RFC 3339).
    pub start: Instant,
    /// Where the replay ends: an instant or an offset from `start` such as `+45d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<When>,
    /// The simulated tenant (the publisher's, for a multi-tenant app).
    pub tenant: TenantFile,
    /// Customer tenants of a multi-tenant app, each with users (and mailboxes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub customers: Vec<CustomerFile>,
    /// The client under test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientFile>,
    /// Outbound traffic windows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<TrafficFile>,
    /// What happens when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<StepFile>,
    /// The checks and the verdict each must have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect: Vec<ExpectFile>,
}

/// The `[client]` table.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    /// `smtp` (default) or `graph`.
    #[serde(default)]
    pub transport: Transport,
    /// `remediated` (default), `naive-2025`, or `mutant:NAME` (a remediated client with one
    /// deliberate bug, for mutation tests of the harness).
    #[serde(default)]
    #[schemars(with = "String")]
    pub profile: Profile,
    /// Latency alert threshold (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_threshold: Option<HumanDuration>,
    /// Backoff cap (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_cap: Option<HumanDuration>,
    /// Fetch a new token this long before the cached one expires (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_ahead: Option<HumanDuration>,
    /// Time between inbound delta sync rounds (default 1m; the sync runs when the scenario has
    /// inbound traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_interval: Option<HumanDuration>,
}

/// A `[[traffic]]` window: one message every `every` from `from` until `until`, sent by the
/// client (`outbound`, the default) or arriving in the mailbox for the sync (`inbound`).
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficFile {
    /// `outbound` (default) or `inbound`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Window start.
    pub from: When,
    /// Window end.
    pub until: When,
    /// Interval between messages.
    pub every: HumanDuration,
}

/// A `[[timeline]]` step.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    /// When.
    pub at: When,
    /// `rotate-secret` (a new secret in the tenant and in the client's secret file),
    /// `rotate-secret-via-graph` (`addPassword` as an operator's script calls it),
    /// `paste-secret` (a value into the client's secret file only: a wrong paste),
    /// `rotate-certificate` (a new certificate in the app and in the client's files),
    /// `delete-app`, `restore-app`, `expire-delta-tokens`, `restart-client`, `fault`,
    /// `clear-faults`, or a user's or a customer tenant's event (`revoke-sessions`,
    /// `reset-password`, `idle-refresh-tokens`, `require-mfa`, `block-by-conditional-access`,
    /// `expire-mfa`, `require-mfa-enrollment`, `enforce-sign-in-frequency`, `disable-user`,
    /// `enable-user`, `withdraw-consent`, `disable-app-in-tenant`, `enable-app-in-tenant`).
    pub action: StepAction,
    /// For `rotate-secret` and `paste-secret`: the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// For `rotate-secret-via-graph`: the new secret's lifetime (`endDateTime` - now); default
    /// none sent, which Graph takes as two years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<HumanDuration>,
    /// For `fault` and `clear-faults`: `entra`, `graph`, `smtp` or `alerts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// For `fault`: `latency`, `timeout`, `reset_peer`, `limit_data`, `bandwidth`, `respond`,
    /// `fail_but_deliver`, `drop_after_data`, `tls_failure` or `malformed_body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FaultName>,
    /// For `fault`: only this operation (`token`, `send-mail`, `end-of-data`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// For `fault` `respond`: the catalogue reply key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// For `fault` `latency`: the delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<HumanDuration>,
    /// For `fault` `limit_data`: the bytes of each reply that get through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// For `fault` `bandwidth`: the rate replies trickle at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<u64>,
    /// For `fault`: active for this long (default: until cleared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
    /// For `fault`: only the first N matching requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<u64>,
    /// For `fault`: only requests of this app (client id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// For `fault`: only requests for this mailbox (UPN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<String>,
    /// For the user-level steps (`revoke-sessions`, `reset-password`, `idle-refresh-tokens`,
    /// `require-mfa`, `block-by-conditional-access`, `expire-mfa`, `require-mfa-enrollment`,
    /// `enforce-sign-in-frequency`, `disable-user`, `enable-user`): the user's UPN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// For the tenant-level steps (`withdraw-consent`, `disable-app-in-tenant`,
    /// `enable-app-in-tenant`): the customer tenant's id or domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// An `[[expect]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectFile {
    /// The check's id, e.g. `no-loss`.
    pub check: CheckId,
    /// `pass` (default) or `fail`.
    #[serde(default, skip_serializing_if = "is_pass")]
    pub verdict: Grade,
    /// A duration parameter: `lead` of `expiry-alert-lead`, `within` of the `*-within` checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<HumanDuration>,
    /// `expiry-alert-lead`: the lead required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead: Option<HumanDuration>,
    /// `token-request-budget`: the most token requests in any hour while credentials fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_hour: Option<u64>,
    /// `token-request-budget`: the most failed token requests of one user's delegated
    /// connection in any hour while credentials fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_user: Option<u64>,
    /// `no-duplicates`: allow one duplicate per send whose outcome the client could not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_unknowable: Option<bool>,
}

fn is_pass(verdict: &Grade) -> bool {
    *verdict == Grade::Pass
}

/// An RFC 3339 instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instant(pub DateTime<Utc>);

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_instant(&text)
            .map(Instant)
            .map_err(serde::de::Error::custom)
    }
}

/// A string schema with a description and an example, for the hand-written value types.
fn string_schema(description: &str, pattern: Option<&str>) -> schemars::Schema {
    let mut schema = schemars::json_schema!({"type": "string", "description": description});
    if let Some(pattern) = pattern {
        schema.insert("pattern".into(), pattern.into());
    }
    schema
}

impl schemars::JsonSchema for Instant {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Instant".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        string_schema(
            "An RFC 3339 instant, e.g. 2025-02-14T11:30:00Z",
            Some(r"^\d{4}-\d{2}-\d{2}T"),
        )
    }
}

impl schemars::JsonSchema for When {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "When".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        string_schema(
            "An RFC 3339 instant, or an offset from the scenario start such as +14h or -30d",
            None,
        )
    }
}

impl schemars::JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        string_schema("A duration such as 10s, 3599s, 90m or 7d", None)
    }
}

impl Serialize for Instant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::time::rfc3339(self.0))
    }
}

fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("expected an RFC 3339 instant such as 2025-02-14T11:30:00Z, got `{text}` ({e})")
        })
}

/// An instant, or an offset from the scenario start (`+14h`, `-30d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// An absolute instant.
    At(DateTime<Utc>),
    /// After the start.
    After(Duration),
    /// Before the start.
    Before(Duration),
}

impl When {
    /// The instant, given the scenario start.
    pub fn resolve(self, start: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            When::At(at) => at,
            When::After(d) => start + crate::time::to_chrono(d),
            When::Before(d) => start - crate::time::to_chrono(d),
        }
    }
}

impl<'de> Deserialize<'de> for When {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let offset = |rest: &str| {
            humantime::parse_duration(rest.trim())
                .map_err(|e| format!("expected an offset such as +14h or -30d, got `{text}` ({e})"))
                .and_then(|d| bounded(d, &text))
        };
        let when = if let Some(rest) = text.strip_prefix('+') {
            offset(rest).map(When::After)
        } else if let Some(rest) = text.strip_prefix('-') {
            offset(rest).map(When::Before)
        } else {
            parse_instant(&text).map(When::At)
        };
        when.map_err(serde::de::Error::custom)
    }
}

impl Serialize for When {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            When::At(at) => s.serialize_str(&crate::time::rfc3339(*at)),
            When::After(d) => s.serialize_str(&format!("+{}", humantime::format_duration(*d))),
            When::Before(d) => s.serialize_str(&format!("-{}", humantime::format_duration(*d))),
        }
    }
}

/// A duration written as humantime text (`10s`, `3599s`, `7d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// The longest duration a scenario or a control call may give: a century. Longer ones mean
/// nothing to a mail client, and instants computed from them could leave the calendar.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `duration` (read from `text`) if it is no longer than [`MAX_DURATION`].
fn bounded(duration: Duration, text: &str) -> Result<Duration, String> {
    if duration > MAX_DURATION {
        return Err(format!(
            "`{text}` is longer than a century, the longest duration taken"
        ));
    }
    Ok(duration)
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| format!("expected a duration such as 10s or 7d, got `{text}` ({e})"))
            .and_then(|d| bounded(d, &text))
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// The `[tenant]` table.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantFile {
    /// Tenant id (GUID).
    pub id: String,
    /// Initial domain, e.g. `contoso.onmicrosoft.com`.
    pub domain: String,
    /// How long a new secret keeps failing (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation_delay: Option<HumanDuration>,
    /// Access token lifetime (default 3599s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_lifetime: Option<HumanDuration>,
    /// Age after which delta tokens get 410 (default 7d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_token_max_age: Option<HumanDuration>,
    /// Whether SMTP AUTH is enabled for the tenant (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_auth: Option<bool>,
    /// Whether users may consent to apps themselves (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_consent: Option<bool>,
    /// The tenant's app management policy on new secrets (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_policy: Option<AppPolicyFile>,
    /// App registrations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<AppFile>,
    /// Mailboxes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mailboxes: Vec<MailboxFile>,
}

/// The `[tenant.app_policy]` table: the `passwordCredentials` restrictions of the tenant's
/// default app management policy, which `addPassword` enforces.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppPolicyFile {
    /// The policy's id, quoted in refusals (default the `defaultAppManagementPolicy`'s,
    /// `00000000-0000-0000-0000-000000000000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `false` enables the `passwordAddition` restriction: no new secrets (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_allowed: Option<bool>,
    /// The `passwordLifetime` restriction: the longest lifetime of a new secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_secret_lifetime: Option<HumanDuration>,
}

impl AppPolicyFile {
    /// The policy the directory enforces.
    fn policy(&self) -> AppPolicy {
        AppPolicy {
            id: self
                .id
                .clone()
                .unwrap_or_else(|| AppPolicy::DEFAULT_ID.to_string()),
            secrets_allowed: self.secrets_allowed.unwrap_or(true),
            max_secret_lifetime: self.max_secret_lifetime.map(|d| d.0),
        }
    }
}

/// A `[[tenant.apps]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppFile {
    /// The client id.
    pub app_id: String,
    /// The application object id (derived from the seed when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Roles per resource (`graph`, `exchange`); absent resources get the defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<Resource, Vec<String>>,
    /// Client secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretFile>,
    /// Certificates (`keyCredentials`), issued from the bundled test keys in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateFile>,
    /// `single-tenant` (default) or `multi-tenant` (users of customer tenants sign in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<SignInAudience>,
    /// Redirect URIs registered for the authorization-code flow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
}

/// A `[[customers]]` entry: one customer tenant with the users listed, or `count` tenants
/// with `users_per_tenant` users each, their ids and names derived from the seed.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerFile {
    /// Tenant id (derived from the seed when absent; only for a single tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Initial domain (default `customer{n}.onmicrosoft.com`; only for a single tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// How many tenants this entry declares (default 1, at most 100,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Users generated in each tenant (`user{k}@{domain}`), after those listed (at most
    /// 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_per_tenant: Option<u32>,
    /// Users listed by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<MailboxFile>,
    /// Consent to the publisher's app at the start: `none` (default: the first sign-in
    /// consents), or `admin` (an admin consented for every user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentFile>,
    /// Whether users may consent themselves (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_consent: Option<bool>,
}

/// Consent present in a customer tenant at the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentFile {
    /// No service principal yet.
    None,
    /// A service principal with an admin's consent for every user.
    Admin,
}

/// A `[[tenant.apps.certificates]]` entry: a self-signed RSA certificate the app trusts for
/// client assertions. Its key is the next of the bundled test keys (`fixtures/keys/`).
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateFile {
    /// Portal description, also the certificate's common name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `startDateTime`, the certificate's `notBefore` (default: one year before the start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<When>,
    /// `endDateTime`, the certificate's `notAfter`.
    pub end: When,
}

/// A `[[tenant.apps.secrets]]` entry.
#[derive(Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretFile {
    /// The secret value a client sends.
    pub value: String,
    /// Portal description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `startDateTime` (default: one year before the scenario start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<When>,
    /// `endDateTime`.
    pub end: When,
}

impl fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretFile")
            .field("value", &"[redacted]")
            .field("display_name", &self.display_name)
            .field("start", &self.start)
            .field("end", &self.end)
            .finish()
    }
}

/// A `[[tenant.mailboxes]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MailboxFile {
    /// User principal name (also the SMTP address).
    pub upn: String,
    /// Object id (derived from the seed when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// A scenario file that cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("failed to read {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        message: String,
    },
    /// The file is not valid TOML, or a key or value is wrong.
    #[error("{path}:{line}:{column}: {message}{}", key.as_ref().map(|k| format!(" (key `{k}`)")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The key at fault, when known.
        key: Option<String>,
        /// What was wrong and what was expected.
        message: String,
    },
    /// The file parses but does not make sense.
    #[error("{path}: {key}: {message}")]
    Semantic {
        /// The file.
        path: PathBuf,
        /// The key at fault.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads and parses a scenario file.
pub fn load(path: &Path) -> Result<ScenarioFile, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    parse(path, &text)
}

/// Parses scenario text; `path` only names the file in errors.
pub fn parse(path: &Path, text: &str) -> Result<ScenarioFile, LoadError> {
    toml::from_str::<ScenarioFile>(text).map_err(|error| {
        let offset = error.span().map_or(0, |s| s.start);
        let (line, column) = line_column(text, offset);
        LoadError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            key: key_at(text, offset),
            message: error.message().trim().to_string(),
        }
    })
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// The dotted key at a byte offset: the table in force plus the key on that line.
/// `a.b.c` with the current index after each array of tables among its prefixes:
/// `tenant.apps[0].secrets[1]`.
fn indexed(name: &str, arrays: &BTreeMap<String, usize>) -> String {
    let mut path = String::new();
    let mut prefix = String::new();
    for (i, part) in name.split('.').enumerate() {
        if i > 0 {
            path.push('.');
            prefix.push('.');
        }
        path.push_str(part);
        prefix.push_str(part);
        if let Some(n) = arrays.get(&prefix) {
            path.push_str(&format!("[{n}]"));
        }
    }
    path
}

/// The key at `offset`, as `table.key`; an array of tables gets its index (`timeline[1].kind`),
/// matching the keys that lowering's errors name.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let mut table = String::new();
    let mut arrays: BTreeMap<String, usize> = BTreeMap::new();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let line_end = line_start + line.len();
        let trimmed = line.trim();
        let is_header = trimmed.starts_with('[');
        if is_header {
            let name = trimmed
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
            if trimmed.starts_with("[[") {
                // A new element: the arrays nested in the previous one start again.
                arrays.retain(|k, _| !k.starts_with(&format!("{name}.")));
                arrays
                    .entry(name.clone())
                    .and_modify(|n| *n += 1)
                    .or_insert(0);
            }
            table = indexed(&name, &arrays);
        }
        if offset < line_end || line_end == text.len() {
            if is_header {
                return Some(table);
            }
            let key = trimmed
                .split_once('=')
                .map(|(k, _)| k.trim().trim_matches('"').to_string());
            return match (table.is_empty(), key) {
                (_, None) if table.is_empty() => None,
                (_, None) => Some(table),
                (true, Some(key)) => Some(key),
                (false, Some(key)) => Some(format!("{table}.{key}")),
            };
        }
        line_start = line_end;
    }
    None
}

impl ScenarioFile {
    /// The calendar start.
    pub fn start(&self) -> DateTime<Utc> {
        self.start.0
    }

    /// The seed.
    pub fn seed(&self) -> Seed {
        Seed(self.seed)
    }

    /// Lowers the tenant into the directory's spec, checking what serde cannot.
    pub fn tenant_spec(&self, path: &Path) -> Result<TenantSpec, LoadError> {
        let semantic = |key: String, message: String| LoadError::Semantic {
            path: path.to_path_buf(),
            key,
            message,
        };
        let mut ids = self.seed().stream("scenario.ids");
        let tenant = &self.tenant;
        let settings = self
            .settings()
            .map_err(|(key, message)| semantic(key, message))?;
        let mut keys = 0;
        let apps = tenant
            .apps
            .iter()
            .enumerate()
            .map(|(i, app)| self.app_spec(path, i, app, &mut ids, &mut keys))
            .collect::<Result<Vec<_>, _>>()?;
        let mailboxes = tenant
            .mailboxes
            .iter()
            .map(|m| MailboxSpec {
                id: m.id.clone().unwrap_or_else(|| ids.guid()),
                upn: m.upn.clone(),
                display_name: m.display_name.clone().unwrap_or_else(|| m.upn.clone()),
            })
            .collect();
        Ok(TenantSpec {
            id: tenant.id.clone(),
            domain: tenant.domain.clone(),
            settings,
            apps,
            mailboxes,
            consents: Vec::new(),
        })
    }

    /// The tenant's settings with their defaults, or the key at fault and why.
    fn settings(&self) -> Result<TenantSettings, (String, String)> {
        let defaults = TenantSettings::default();
        let tenant = &self.tenant;
        let settings = TenantSettings {
            propagation_delay: tenant
                .propagation_delay
                .map_or(defaults.propagation_delay, |d| d.0),
            token_lifetime: tenant
                .token_lifetime
                .map_or(defaults.token_lifetime, |d| d.0),
            delta_token_max_age: tenant
                .delta_token_max_age
                .map_or(defaults.delta_token_max_age, |d| d.0),
            smtp_auth_enabled: tenant.smtp_auth.unwrap_or(defaults.smtp_auth_enabled),
            user_consent: tenant.user_consent.unwrap_or(defaults.user_consent),
            sent_capacity: defaults.sent_capacity,
            app_policy: tenant.app_policy.as_ref().map(AppPolicyFile::policy),
        };
        let zero = |key: &str| Err((key.to_string(), "must be longer than 0s".to_string()));
        if settings.token_lifetime.is_zero() {
            return zero("tenant.token_lifetime");
        }
        let max_lifetime = settings
            .app_policy
            .as_ref()
            .and_then(|p| p.max_secret_lifetime);
        if max_lifetime.is_some_and(|d| d.is_zero()) {
            return zero("tenant.app_policy.max_secret_lifetime");
        }
        Ok(settings)
    }

    /// The `i`th `[[tenant.apps]]`, its secrets and certificates checked and dated;
    /// `keys` counts the test keys used so far.
    fn app_spec(
        &self,
        path: &Path,
        i: usize,
        app: &AppFile,
        ids: &mut crate::seed::SeedRng,
        keys: &mut usize,
    ) -> Result<AppSpec, LoadError> {
        let start = self.start();
        let mut secrets = Vec::new();
        for (j, secret) in app.secrets.iter().enumerate() {
            let secret_start = secret
                .start
                .map_or(start - chrono::TimeDelta::days(365), |w| w.resolve(start));
            let end = secret.end.resolve(start);
            if end <= secret_start {
                return Err(LoadError::Semantic {
                    path: path.to_path_buf(),
                    key: format!("tenant.apps[{i}].secrets[{j}].end"),
                    message: "must be after the secret's start".into(),
                });
            }
            secrets.push(SecretSpec {
                value: secret.value.clone(),
                display_name: secret
                    .display_name
                    .clone()
                    .unwrap_or_else(|| format!("secret-{}", j + 1)),
                start: secret_start,
                end,
            });
        }
        let mut certificates = Vec::new();
        for (j, certificate) in app.certificates.iter().enumerate() {
            let key = format!("tenant.apps[{i}].certificates[{j}]");
            let cert_start = certificate
                .start
                .map_or(start - chrono::TimeDelta::days(365), |w| w.resolve(start));
            let name = certificate
                .display_name
                .clone()
                .unwrap_or_else(|| format!("certificate-{}", j + 1));
            let issued = issue_certificate(
                path,
                &key,
                *keys,
                &name,
                cert_start,
                certificate.end.resolve(start),
            )?;
            *keys += 1;
            certificates.push(issued);
        }
        Ok(AppSpec {
            app_id: app.app_id.clone(),
            object_id: app.object_id.clone().unwrap_or_else(|| ids.guid()),
            display_name: app
                .display_name
                .clone()
                .unwrap_or_else(|| app.app_id.clone()),
            secrets,
            certificates,
            roles: app.roles.clone().into_iter().collect(),
            audience: app.audience.unwrap_or_default(),
            redirect_uris: app.redirect_uris.clone(),
        })
    }

    /// The customer tenants, expanded: ids, domains and users derived from the seed where the
    /// file leaves them out (a stream of its own, so adding customers changes no other id).
    pub fn customer_specs(&self, path: &Path) -> Result<Vec<TenantSpec>, LoadError> {
        let mut ids = self.seed().stream("scenario.customers");
        let app_ids: Vec<String> = self.tenant.apps.iter().map(|a| a.app_id.clone()).collect();
        let mut out = Vec::new();
        for (i, customer) in self.customers.iter().enumerate() {
            let count = customer_bounds(path, i, customer)?;
            for _ in 0..count {
                let n = out.len() + 1;
                let spec = customer_spec(customer, n, &app_ids, &mut ids);
                self.tenant_is_new(path, i, &spec, &out)?;
                out.push(spec);
            }
        }
        Ok(out)
    }

    /// A customer tenant's id and domain name no other tenant of the file: a repeated one
    /// would send sign-ins and events to the wrong tenant.
    fn tenant_is_new(
        &self,
        path: &Path,
        i: usize,
        spec: &TenantSpec,
        earlier: &[TenantSpec],
    ) -> Result<(), LoadError> {
        let home = (self.tenant.id.as_str(), self.tenant.domain.as_str());
        let others =
            std::iter::once(home).chain(earlier.iter().map(|t| (t.id.as_str(), t.domain.as_str())));
        for (id, domain) in others {
            let (field, value) = if id.eq_ignore_ascii_case(&spec.id) {
                ("id", &spec.id)
            } else if domain.eq_ignore_ascii_case(&spec.domain) {
                ("domain", &spec.domain)
            } else {
                continue;
            };
            return Err(LoadError::Semantic {
                path: path.to_path_buf(),
                key: format!("customers[{i}].{field}"),
                message: format!("`{value}` is already another tenant's {field}"),
            });
        }
        Ok(())
    }

    /// How many certificates the tenant declares (each takes one bundled test key).
    pub fn certificate_count(&self) -> usize {
        self.tenant.apps.iter().map(|a| a.certificates.len()).sum()
    }
}

/// The most tenants one `[[customers]]` entry may declare: the directory holds every tenant in
/// memory and scans them by id, so a typo of a few digits must not exhaust the machine.
pub const MAX_CUSTOMER_COUNT: u32 = 100_000;
/// The most users one customer tenant may generate, for the same reason.
pub const MAX_USERS_PER_TENANT: u32 = 10_000;
/// The most users one entry may generate in all its tenants (`count` x `users_per_tenant`).
pub const MAX_GENERATED_USERS: u64 = 1_000_000;

/// A `[[customers]]` entry's `count` (checked) within its bounds, and its `users_per_tenant`.
fn customer_bounds(path: &Path, i: usize, customer: &CustomerFile) -> Result<u32, LoadError> {
    let semantic = |field: &str, message: String| LoadError::Semantic {
        path: path.to_path_buf(),
        key: format!("customers[{i}].{field}"),
        message,
    };
    let count = customer.count.unwrap_or(1);
    if count == 0 || (count > 1 && (customer.id.is_some() || customer.domain.is_some())) {
        let message = "must be at least 1, and 1 where `id` or `domain` is given";
        return Err(semantic("count", message.into()));
    }
    if count > MAX_CUSTOMER_COUNT {
        let message = format!("must be at most {MAX_CUSTOMER_COUNT}, got {count}");
        return Err(semantic("count", message));
    }
    let users = customer.users_per_tenant.unwrap_or(0);
    if users > MAX_USERS_PER_TENANT {
        let message = format!("must be at most {MAX_USERS_PER_TENANT}, got {users}");
        return Err(semantic("users_per_tenant", message));
    }
    let total = u64::from(count) * u64::from(users);
    if total > MAX_GENERATED_USERS {
        let message = format!(
            "makes {total} users with `count` {count}: at most {MAX_GENERATED_USERS} per entry"
        );
        return Err(semantic("users_per_tenant", message));
    }
    Ok(count)
}

/// The `n`th customer tenant (1-based) from its entry.
fn customer_spec(
    customer: &CustomerFile,
    n: usize,
    app_ids: &[String],
    ids: &mut crate::seed::SeedRng,
) -> TenantSpec {
    let id = customer.id.clone().unwrap_or_else(|| ids.guid());
    let domain = customer
        .domain
        .clone()
        .unwrap_or_else(|| format!("customer{n}.onmicrosoft.com"));
    let mut mailboxes: Vec<MailboxSpec> = customer
        .users
        .iter()
        .map(|m| MailboxSpec {
            id: m.id.clone().unwrap_or_else(|| ids.guid()),
            upn: m.upn.clone(),
            display_name: m.display_name.clone().unwrap_or_else(|| m.upn.clone()),
        })
        .collect();
    for k in 1..=customer.users_per_tenant.unwrap_or(0) {
        let upn = format!("user{k}@{domain}");
        mailboxes.push(MailboxSpec {
            id: ids.guid(),
            display_name: upn.clone(),
            upn,
        });
    }
    let admin = customer.consent == Some(ConsentFile::Admin);
    TenantSpec {
        id,
        domain,
        settings: TenantSettings {
            user_consent: customer.user_consent.unwrap_or(true),
            ..TenantSettings::default()
        },
        apps: Vec::new(),
        mailboxes,
        consents: if admin {
            app_ids
                .iter()
                .map(|app_id| crate::tenant::ConsentSpec {
                    app_id: app_id.clone(),
                    admin: true,
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// The certificate named at `key` (a file key for errors), issued from the `n`th bundled test
/// key, valid from `start` to `end`.
pub(crate) fn issue_certificate(
    path: &Path,
    key: &str,
    n: usize,
    name: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<CertificateSpec, LoadError> {
    let semantic = |field: &str, message: String| LoadError::Semantic {
        path: path.to_path_buf(),
        key: format!("{key}{field}"),
        message,
    };
    if end <= start {
        return Err(semantic(
            ".end",
            "must be after the certificate's start".into(),
        ));
    }
    let Some(pem) = TEST_KEYS.get(n) else {
        return Err(semantic(
            "",
            format!(
                "maildrill bundles {} test keys, one per certificate (rotations included): at most {} certificates in a scenario",
                TEST_KEYS.len(),
                TEST_KEYS.len()
            ),
        ));
    };
    CertificateSpec::issue(pem, name, start, end).map_err(|e| semantic("", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "demo"
seed = 9
start = "2025-01-01T00:00:00Z"
end = "+45d"

[tenant]
id = "4f3c9a2e-8b1d-4e6f-a5c7-2d9e0b1f3a64"
domain = "contoso.onmicrosoft.com"
propagation_delay = "10s"

[[tenant.apps]]
app_id = "9b2e7c41-3f5a-4d8b-b6e0-1c4a7f9d2e53"

[[tenant.apps.secrets]]
value = "abc8Q~secret"
end = "2025-02-14T11:30:00Z"

[[tenant.mailboxes]]
upn = "mailman@contoso.onmicrosoft.com"
"#;

    #[test]
    fn a_good_file_lowers_into_a_tenant() {
        let file = parse(Path::new("s.toml"), GOOD).unwrap();
        assert_eq!(
            file.end.unwrap().resolve(file.start()).to_rfc3339(),
            "2025-02-15T00:00:00+00:00"
        );
        let spec = file.tenant_spec(Path::new("s.toml")).unwrap();
        assert_eq!(
            spec.apps[0].secrets[0].end.to_rfc3339(),
            "2025-02-14T11:30:00+00:00"
        );
        assert_eq!(spec.apps[0].object_id.len(), 36);
    }

    #[test]
    fn unknown_keys_name_file_line_column_and_key() {
        let text = GOOD.replace("propagation_delay = \"10s\"", "propagation_dealy = \"10s\"");
        let error = parse(Path::new("s.toml"), &text).unwrap_err().to_string();
        assert!(
            error.starts_with("s.toml:10:1: unknown field `propagation_dealy`, expected one of"),
            "{error}"
        );
        assert!(
            error.ends_with("(key `tenant.propagation_dealy`)"),
            "{error}"
        );
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        let text = GOOD.replace("end = \"2025-02-14T11:30:00Z\"", "end = \"next tuesday\"");
        let error = parse(Path::new("s.toml"), &text).unwrap_err().to_string();
        assert!(
            error.contains("s.toml:17:7: expected an RFC 3339 instant"),
            "{error}"
        );
        assert!(
            error.contains("(key `tenant.apps[0].secrets[0].end`)"),
            "{error}"
        );
    }
}
