//! The wire catalogue: every status, header and body text the HTTP mocks send, loaded from
//! `fixtures/wire/*.toml` so fidelity facts live in one reviewed place, not in code.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::HttpResponse;
use crate::time::Pattern;

/// Values that fill `${name}` placeholders in the catalogue.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    values: Vec<(&'static str, String)>,
    dates: Option<Arc<ReplyDates>>,
}

impl Vars {
    /// Adds or replaces a value.
    pub fn set(mut self, name: &'static str, value: impl Into<String>) -> Self {
        let value = value.into();
        match self.values.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.values.push((name, value)),
        }
        self
    }

    /// Takes `date`, `timestamp` and `inner_date` from `dates` unless set otherwise.
    pub fn with_dates(mut self, dates: Arc<ReplyDates>) -> Self {
        self.dates = Some(dates);
        self
    }

    /// The same variables with HTML's special characters escaped, for a template that is an
    /// HTML page: values echo the request (a redirect URI, a client id, a request id header).
    pub fn html_escaped(&self) -> Vars {
        let escape = |value: &String| maud::html! { (value) }.into_string();
        Vars {
            values: self.values.iter().map(|(k, v)| (*k, escape(v))).collect(),
            dates: self.dates.clone(),
        }
    }

    /// Fills every known `${name}` in `template`; unknown placeholders stay as written.
    pub fn fill(&self, template: &str) -> String {
        // One pass over the template: replies are rendered per request, under load.
        let mut out = String::with_capacity(template.len() + 64);
        let mut rest = template;
        while let Some(open) = rest.find("${") {
            out.push_str(&rest[..open]);
            let after = &rest[open + 2..];
            let value = after
                .find('}')
                .and_then(|close| Some((close, self.get(&after[..close])?)));
            match value {
                Some((close, value)) => {
                    out.push_str(value);
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str("${");
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .or_else(|| self.dates.as_ref()?.get(name))
    }
}

static ENTRA_TIMESTAMP: Pattern = Pattern::new("%Y-%m-%d %H:%M:%SZ");
static INNER_DATE: Pattern = Pattern::new("%Y-%m-%dT%H:%M:%S");

/// The dates a reply may show, for one second of the clock: the `Date` header, Entra's
/// `timestamp` and Graph's `innerError.date`. Each is formatted when a reply first uses it; a
/// successful Graph reply needs only the first.
#[derive(Debug)]
pub struct ReplyDates {
    at: DateTime<Utc>,
    http: OnceLock<String>,
    entra: OnceLock<String>,
    inner: OnceLock<String>,
}

impl ReplyDates {
    /// The dates of `at`.
    pub fn new(at: DateTime<Utc>) -> ReplyDates {
        ReplyDates {
            at,
            http: OnceLock::new(),
            entra: OnceLock::new(),
            inner: OnceLock::new(),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        let (cell, pattern) = match name {
            // IMF-fixdate, the `Date` of every reply: httpdate writes it without a pattern.
            "date" => {
                return Some(
                    self.http
                        .get_or_init(|| httpdate::fmt_http_date(SystemTime::from(self.at))),
                );
            }
            "timestamp" => (&self.entra, &ENTRA_TIMESTAMP),
            "inner_date" => (&self.inner, &INNER_DATE),
            _ => return None,
        };
        Some(cell.get_or_init(|| pattern.format(self.at)))
    }
}

/// An Entra error from the catalogue, named as in `fixtures/wire/entra.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[expect(
    missing_docs,
    reason = "each variant is named for its catalogue key, documented in fixtures/wire/"
)]
pub enum EntraError {
    ExpiredSecret,
    InvalidSecret,
    MissingCredential,
    UnknownCertificate,
    BadAssertionSignature,
    ExpiredCertificate,
    AssertionTimeRange,
    MalformedAssertion,
    AssertionAudience,
    AssertionClientMismatch,
    UnknownApp,
    UnknownTenant,
    UnknownTenantDiscovery,
    MissingParameter,
    PostOnly,
    UnsupportedGrantType,
    InvalidScope,
    InvalidResource,
    Unavailable,
    RefreshTokenInactive,
    GrantRevoked,
    ConsentRequired,
    MfaRequired,
    ConditionalAccess,
    AppDisabled,
    CodeRedeemed,
    CodeExpired,
    InvalidCode,
    InvalidRefreshToken,
    PkceMismatch,
    RedirectMismatch,
    NotMultiTenant,
    UserDisabled,
    MfaExpired,
    MfaEnrollment,
    SignInFrequency,
    CodeOtherTenant,
}

impl EntraError {
    /// Every variant, for coverage tests and the fault vocabulary.
    pub const ALL: [EntraError; 37] = [
        EntraError::ExpiredSecret,
        EntraError::InvalidSecret,
        EntraError::MissingCredential,
        // In the place of the catalogue's former `unsupported_assertion`, so the replies after
        // it keep their ids.
        EntraError::UnknownCertificate,
        EntraError::UnknownApp,
        EntraError::UnknownTenant,
        EntraError::UnknownTenantDiscovery,
        EntraError::MissingParameter,
        EntraError::PostOnly,
        EntraError::UnsupportedGrantType,
        EntraError::InvalidScope,
        EntraError::InvalidResource,
        EntraError::Unavailable,
        // The other certificate credential errors, after the rest for the same reason.
        EntraError::BadAssertionSignature,
        EntraError::ExpiredCertificate,
        EntraError::AssertionTimeRange,
        EntraError::MalformedAssertion,
        EntraError::AssertionAudience,
        EntraError::AssertionClientMismatch,
        // The delegated grants' errors (authorization code, refresh token), after the rest.
        EntraError::RefreshTokenInactive,
        EntraError::GrantRevoked,
        EntraError::ConsentRequired,
        EntraError::MfaRequired,
        EntraError::ConditionalAccess,
        EntraError::AppDisabled,
        EntraError::CodeRedeemed,
        EntraError::CodeExpired,
        EntraError::InvalidCode,
        EntraError::InvalidRefreshToken,
        EntraError::PkceMismatch,
        EntraError::RedirectMismatch,
        EntraError::NotMultiTenant,
        // The rest of the user- and tenant-level refusals (wire reference §8.4), last again.
        EntraError::UserDisabled,
        EntraError::MfaExpired,
        EntraError::MfaEnrollment,
        EntraError::SignInFrequency,
        EntraError::CodeOtherTenant,
    ];

    /// The catalogue key.
    pub fn key(self) -> &'static str {
        match self {
            EntraError::ExpiredSecret => "expired_secret",
            EntraError::InvalidSecret => "invalid_secret",
            EntraError::MissingCredential => "missing_credential",
            EntraError::UnknownCertificate => "unknown_certificate",
            EntraError::BadAssertionSignature => "bad_assertion_signature",
            EntraError::ExpiredCertificate => "expired_certificate",
            EntraError::AssertionTimeRange => "assertion_time_range",
            EntraError::MalformedAssertion => "malformed_assertion",
            EntraError::AssertionAudience => "assertion_audience",
            EntraError::AssertionClientMismatch => "assertion_client_mismatch",
            EntraError::UnknownApp => "unknown_app",
            EntraError::UnknownTenant => "unknown_tenant",
            EntraError::UnknownTenantDiscovery => "unknown_tenant_discovery",
            EntraError::MissingParameter => "missing_parameter",
            EntraError::PostOnly => "post_only",
            EntraError::UnsupportedGrantType => "unsupported_grant_type",
            EntraError::InvalidScope => "invalid_scope",
            EntraError::InvalidResource => "invalid_resource",
            EntraError::Unavailable => "unavailable",
            EntraError::RefreshTokenInactive => "refresh_token_inactive",
            EntraError::GrantRevoked => "grant_revoked",
            EntraError::ConsentRequired => "consent_required",
            EntraError::MfaRequired => "mfa_required",
            EntraError::ConditionalAccess => "conditional_access",
            EntraError::AppDisabled => "app_disabled",
            EntraError::CodeRedeemed => "code_redeemed",
            EntraError::CodeExpired => "code_expired",
            EntraError::InvalidCode => "invalid_code",
            EntraError::InvalidRefreshToken => "invalid_refresh_token",
            EntraError::PkceMismatch => "pkce_mismatch",
            EntraError::RedirectMismatch => "redirect_mismatch",
            EntraError::NotMultiTenant => "not_multi_tenant",
            EntraError::UserDisabled => "user_disabled",
            EntraError::MfaExpired => "mfa_expired",
            EntraError::MfaEnrollment => "mfa_enrollment",
            EntraError::SignInFrequency => "sign_in_frequency",
            EntraError::CodeOtherTenant => "code_other_tenant",
        }
    }

    /// The variant for a catalogue key.
    pub fn from_key(key: &str) -> Option<EntraError> {
        EntraError::ALL.into_iter().find(|e| e.key() == key)
    }
}

/// A Graph error from the catalogue, named as in `fixtures/wire/graph.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[expect(
    missing_docs,
    reason = "each variant is named for its catalogue key, documented in fixtures/wire/"
)]
pub enum GraphError {
    TokenMissing,
    TokenMalformed,
    TokenInvalid,
    TokenWrongAudience,
    TokenExpired,
    AccessDenied,
    DirectoryDenied,
    MailboxConcurrency,
    TooManyRequests,
    InvalidBase64Mime,
    UnreadableJson,
    InvalidRecipients,
    UnknownUser,
    UnknownFolder,
    UnknownSegment,
    MethodNotAllowed,
    SyncStateNotFound,
    ApplicationNotFound,
    KeyNotFound,
    InvalidFilter,
    InvalidRequestBody,
    Unavailable,
    GatewayTimeout,
    CredentialLifetimePolicy,
    CredentialTypePolicy,
    DirectoryThrottled,
    MeNeedsDelegated,
    SendAsDenied,
}

impl GraphError {
    /// Every variant, for coverage tests and the fault vocabulary.
    pub const ALL: [GraphError; 28] = [
        GraphError::TokenMissing,
        GraphError::TokenMalformed,
        GraphError::TokenInvalid,
        GraphError::TokenWrongAudience,
        GraphError::TokenExpired,
        GraphError::AccessDenied,
        GraphError::DirectoryDenied,
        GraphError::MailboxConcurrency,
        GraphError::TooManyRequests,
        GraphError::InvalidBase64Mime,
        GraphError::UnreadableJson,
        GraphError::InvalidRecipients,
        GraphError::UnknownUser,
        GraphError::UnknownFolder,
        GraphError::UnknownSegment,
        GraphError::MethodNotAllowed,
        GraphError::SyncStateNotFound,
        GraphError::ApplicationNotFound,
        GraphError::KeyNotFound,
        GraphError::InvalidFilter,
        GraphError::InvalidRequestBody,
        GraphError::Unavailable,
        GraphError::GatewayTimeout,
        GraphError::CredentialLifetimePolicy,
        GraphError::CredentialTypePolicy,
        GraphError::DirectoryThrottled,
        // Delegated tokens (issue 14), after the rest so the replies before keep their ids.
        GraphError::MeNeedsDelegated,
        GraphError::SendAsDenied,
    ];

    /// The catalogue key.
    pub fn key(self) -> &'static str {
        match self {
            GraphError::TokenMissing => "token_missing",
            GraphError::TokenMalformed => "token_malformed",
            GraphError::TokenInvalid => "token_invalid",
            GraphError::TokenWrongAudience => "token_wrong_audience",
            GraphError::TokenExpired => "token_expired",
            GraphError::AccessDenied => "access_denied",
            GraphError::DirectoryDenied => "directory_denied",
            GraphError::MailboxConcurrency => "mailbox_concurrency",
            GraphError::TooManyRequests => "too_many_requests",
            GraphError::InvalidBase64Mime => "invalid_base64_mime",
            GraphError::UnreadableJson => "unreadable_json",
            GraphError::InvalidRecipients => "invalid_recipients",
            GraphError::UnknownUser => "unknown_user",
            GraphError::UnknownFolder => "unknown_folder",
            GraphError::UnknownSegment => "unknown_segment",
            GraphError::MethodNotAllowed => "method_not_allowed",
            GraphError::SyncStateNotFound => "sync_state_not_found",
            GraphError::ApplicationNotFound => "application_not_found",
            GraphError::KeyNotFound => "key_not_found",
            GraphError::InvalidFilter => "invalid_filter",
            GraphError::InvalidRequestBody => "invalid_request_body",
            GraphError::Unavailable => "unavailable",
            GraphError::GatewayTimeout => "gateway_timeout",
            GraphError::CredentialLifetimePolicy => "credential_lifetime_policy",
            GraphError::CredentialTypePolicy => "credential_type_policy",
            GraphError::DirectoryThrottled => "directory_throttled",
            GraphError::MeNeedsDelegated => "me_needs_delegated",
            GraphError::SendAsDenied => "send_as_denied",
        }
    }

    /// The variant for a catalogue key.
    pub fn from_key(key: &str) -> Option<GraphError> {
        GraphError::ALL.into_iter().find(|e| e.key() == key)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntraFile {
    headers: Vec<(String, String)>,
    success: EntraSuccess,
    envelope: EntraEnvelope,
    errors: BTreeMap<String, EntraEntry>,
    throttled: PlainReply,
    discovery: EntraDiscovery,
    jwks: EntraJwks,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntraSuccess {
    token_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntraEnvelope {
    error_uri: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntraDiscovery {
    issuer: String,
    tenant_region_scope: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntraJwks {
    key_use: String,
    issuer: String,
    #[expect(dead_code, reason = "documentation in the catalogue file")]
    source: String,
    #[expect(dead_code, reason = "documentation in the catalogue file")]
    choice: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntraEntry {
    status: u16,
    error: String,
    code: u32,
    description: String,
    /// `suberror`, after `error_uri` (delegated grants, wire reference §8.4).
    #[serde(default)]
    suberror: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    choice: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainReply {
    status: u16,
    body: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    choice: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphFile {
    headers: Vec<(String, String)>,
    #[serde(default)]
    choice: Option<String>,
    errors: BTreeMap<String, GraphEntry>,
    html_unavailable: PlainReply,
    www_authenticate: WwwAuthenticate,
    delta: DeltaSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphEntry {
    status: u16,
    code: String,
    message: String,
    inner: bool,
    #[serde(default)]
    www_authenticate: bool,
    #[serde(default)]
    retry_after: Option<String>,
    #[serde(default)]
    location: bool,
    #[serde(default)]
    details: Vec<GraphDetail>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    choice: Option<String>,
}

/// One entry of a Graph error's `details` (the directory's refusals carry one).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphDetail {
    code: String,
    message: String,
    target: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WwwAuthenticate {
    value: String,
}

/// Delta paging defaults from the catalogue.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaSettings {
    /// Page size without a `Prefer: odata.maxpagesize` header.
    pub default_page_size: usize,
    /// The largest page the mock serves.
    pub max_page_size: usize,
}

fn entra_file() -> &'static EntraFile {
    static FILE: OnceLock<EntraFile> = OnceLock::new();
    FILE.get_or_init(|| {
        toml::from_str(include_str!("../../fixtures/wire/entra.toml"))
            .expect("fixtures/wire/entra.toml is valid; wire::tests load it")
    })
}

fn graph_file() -> &'static GraphFile {
    static FILE: OnceLock<GraphFile> = OnceLock::new();
    FILE.get_or_init(|| {
        toml::from_str(include_str!("../../fixtures/wire/graph.toml"))
            .expect("fixtures/wire/graph.toml is valid; wire::tests load it")
    })
}

/// A catalogue header, parsed once: a fixed value, one variable, or a template filled per
/// reply.
#[derive(Debug)]
pub(super) struct HeaderTemplate {
    name: HeaderName,
    value: TemplateValue,
}

#[derive(Debug)]
enum TemplateValue {
    Fixed(HeaderValue),
    /// The whole value is `${name}` (ids, dates): no template to scan.
    Var(String),
    Template(String),
}

pub(super) fn templates(headers: &[(String, String)]) -> Vec<HeaderTemplate> {
    headers
        .iter()
        .map(|(name, value)| {
            let var = value
                .strip_prefix("${")
                .and_then(|v| v.strip_suffix('}'))
                .filter(|v| !v.contains(['$', '{', '}']));
            HeaderTemplate {
                name: HeaderName::from_bytes(name.as_bytes())
                    .expect("catalogue header names are valid"),
                value: match var {
                    Some(var) => TemplateValue::Var(var.to_string()),
                    None if value.contains("${") => TemplateValue::Template(value.clone()),
                    None => TemplateValue::Fixed(
                        HeaderValue::from_str(value).expect("catalogue header values are valid"),
                    ),
                },
            }
        })
        .collect()
}

pub(super) fn response(
    status: u16,
    headers: &[HeaderTemplate],
    extra: &[(&str, String)],
    vars: &Vars,
    body: Bytes,
) -> HttpResponse {
    let mut map = http::HeaderMap::with_capacity(headers.len() + extra.len() + 1);
    for header in headers {
        // Filled values come from the request (ids, dates): invalid bytes are dropped.
        let value = match &header.value {
            TemplateValue::Fixed(value) => Ok(value.clone()),
            TemplateValue::Var(name) => match vars.get(name) {
                Some(value) => HeaderValue::from_str(value),
                None => HeaderValue::from_str(&format!("${{{name}}}")),
            },
            TemplateValue::Template(template) => HeaderValue::from_str(&vars.fill(template)),
        };
        if let Ok(value) = value {
            map.append(header.name.clone(), value);
        }
    }
    for (name, value) in extra {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("extra header names are static");
        if let Ok(value) = HeaderValue::from_str(value) {
            map.append(name, value);
        }
    }
    let mut response = http::Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).expect("catalogue statuses are valid");
    *response.headers_mut() = map;
    response
}

struct Parsed {
    entra_headers: Vec<HeaderTemplate>,
    entra_throttled_headers: Vec<HeaderTemplate>,
    graph_headers: Vec<HeaderTemplate>,
    graph_headers_no_body: Vec<HeaderTemplate>,
}

fn parsed() -> &'static Parsed {
    static PARSED: OnceLock<Parsed> = OnceLock::new();
    PARSED.get_or_init(|| {
        let graph = graph_file();
        let no_body: Vec<(String, String)> = graph
            .headers
            .iter()
            .filter(|(n, _)| n != "Content-Type")
            .cloned()
            .collect();
        Parsed {
            entra_headers: templates(&entra_file().headers),
            entra_throttled_headers: templates(&entra_file().throttled.headers),
            graph_headers: templates(&graph.headers),
            // An empty 202/204 carries no Content-Type.
            graph_headers_no_body: templates(&no_body),
        }
    })
}

/// The status code of an Entra error.
pub fn entra_status(error: EntraError) -> u16 {
    entra_entry(error).status
}

fn entra_entry(error: EntraError) -> &'static EntraEntry {
    entra_file()
        .errors
        .get(error.key())
        .expect("every EntraError has a catalogue entry")
}

/// An Entra error reply. `vars` must hold trace_id, correlation_id, timestamp and date.
pub fn entra_error(error: EntraError, vars: &Vars) -> HttpResponse {
    let file = entra_file();
    let entry = entra_entry(error);
    let vars = vars.clone().set("code", entry.code.to_string());
    let description = format!(
        "{} Trace ID: {} Correlation ID: {} Timestamp: {}",
        vars.fill(&entry.description),
        vars.fill("${trace_id}"),
        vars.fill("${correlation_id}"),
        vars.fill("${timestamp}"),
    );
    let mut body = json!({
        "error": entry.error,
        "error_description": description,
        "error_codes": [entry.code],
        "timestamp": vars.fill("${timestamp}"),
        "trace_id": vars.fill("${trace_id}"),
        "correlation_id": vars.fill("${correlation_id}"),
        "error_uri": vars.fill(&file.envelope.error_uri),
    });
    if let Some(suberror) = &entry.suberror {
        body["suberror"] = json!(suberror);
    }
    let body = Bytes::from(serde_json::to_vec(&body).expect("JSON values serialise"));
    response(entry.status, &parsed().entra_headers, &[], &vars, body)
}

/// The token endpoint's success reply.
pub fn entra_token(access_token: &str, expires_in: u64, vars: &Vars) -> HttpResponse {
    let file = entra_file();
    let body = json!({
        "token_type": file.success.token_type,
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": access_token,
    });
    let body = Bytes::from(serde_json::to_vec(&body).expect("JSON values serialise"));
    response(200, &parsed().entra_headers, &[], vars, body)
}

/// What a delegated grant's success body carries besides the access token.
#[derive(Debug, Clone, Copy)]
pub struct DelegatedBody<'a> {
    /// `scope`.
    pub scope: &'a str,
    /// `expires_in` and `ext_expires_in`.
    pub expires_in: u64,
    /// `refresh_token`, when `offline_access` was granted.
    pub refresh_token: Option<&'a str>,
    /// `id_token`, when `openid` was asked for.
    pub id_token: Option<&'a str>,
    /// `client_info`, when the request carried `client_info=1`.
    pub client_info: Option<&'a str>,
}

/// A delegated grant's success reply, in the wire order of §8.3: `token_type`, `scope`,
/// `expires_in`, `ext_expires_in`, `access_token`, `refresh_token`, `id_token`,
/// `client_info` (no `foci`: a third-party app is no Microsoft "family" app).
pub fn entra_delegated_token(
    access_token: &str,
    body: DelegatedBody<'_>,
    vars: &Vars,
) -> HttpResponse {
    let file = entra_file();
    let mut value = json!({
        "token_type": file.success.token_type,
        "scope": body.scope,
        "expires_in": body.expires_in,
        "ext_expires_in": body.expires_in,
        "access_token": access_token,
    });
    let optional = [
        ("refresh_token", body.refresh_token),
        ("id_token", body.id_token),
        ("client_info", body.client_info),
    ];
    for (name, field) in optional {
        if let Some(field) = field {
            value[name] = json!(field);
        }
    }
    let body = Bytes::from(serde_json::to_vec(&value).expect("JSON values serialise"));
    response(200, &parsed().entra_headers, &[], vars, body)
}

/// The token endpoint's plain-text 429.
pub fn entra_throttled(vars: &Vars) -> HttpResponse {
    let reply = &entra_file().throttled;
    response(
        reply.status,
        &parsed().entra_throttled_headers,
        &[],
        vars,
        Bytes::from(reply.body.clone()),
    )
}

/// A JSON reply with the token endpoint's headers (the discovery document).
pub fn entra_json(value: &serde_json::Value, vars: &Vars) -> HttpResponse {
    let body = Bytes::from(serde_json::to_vec(value).expect("JSON values serialise"));
    response(200, &parsed().entra_headers, &[], vars, body)
}

/// The discovery document's `issuer` and `tenant_region_scope`.
pub fn entra_discovery(vars: &Vars) -> (String, String) {
    let discovery = &entra_file().discovery;
    (
        vars.fill(&discovery.issuer),
        discovery.tenant_region_scope.clone(),
    )
}

/// The keys document's `use` and `issuer` (filled).
pub fn entra_jwks(vars: &Vars) -> (String, String) {
    let jwks = &entra_file().jwks;
    (jwks.key_use.clone(), vars.fill(&jwks.issuer))
}

/// The status code of a Graph error.
pub fn graph_status(error: GraphError) -> u16 {
    graph_entry(error).status
}

fn graph_entry(error: GraphError) -> &'static GraphEntry {
    graph_file()
        .errors
        .get(error.key())
        .expect("every GraphError has a catalogue entry")
}

/// A Graph error reply. `vars` must hold request_id, client_request_id, date and inner_date;
/// `location` is the resync URL for `SyncStateNotFound`; `retry_after` overrides the
/// catalogue's value (`Some("")` removes the header, as Graph sometimes does).
pub fn graph_error(
    error: GraphError,
    vars: &Vars,
    location: Option<&str>,
    retry_after: Option<&str>,
) -> HttpResponse {
    let file = graph_file();
    let entry = graph_entry(error);
    let mut inner = serde_json::Map::new();
    let mut object = serde_json::Map::new();
    object.insert("code".into(), json!(entry.code));
    object.insert("message".into(), json!(vars.fill(&entry.message)));
    if !entry.details.is_empty() {
        let details: Vec<serde_json::Value> = entry
            .details
            .iter()
            .map(|d| json!({"code": d.code, "message": vars.fill(&d.message), "target": d.target}))
            .collect();
        object.insert("details".into(), json!(details));
    }
    if entry.inner {
        inner.insert("date".into(), json!(vars.fill("${inner_date}")));
        inner.insert("request-id".into(), json!(vars.fill("${request_id}")));
        inner.insert(
            "client-request-id".into(),
            json!(vars.fill("${client_request_id}")),
        );
        object.insert("innerError".into(), serde_json::Value::Object(inner));
    }
    let body = json!({ "error": object });
    let mut extra = Vec::new();
    if entry.www_authenticate {
        extra.push(("WWW-Authenticate", file.www_authenticate.value.clone()));
    }
    match retry_after.or(entry.retry_after.as_deref()) {
        Some("") | None => {}
        Some(value) => extra.push(("Retry-After", value.to_string())),
    }
    if entry.location
        && let Some(location) = location
    {
        extra.push(("Location", location.to_string()));
    }
    let body = Bytes::from(serde_json::to_vec(&body).expect("JSON values serialise"));
    response(entry.status, &parsed().graph_headers, &extra, vars, body)
}

/// A Graph success reply with a JSON body (`status` 200) or none (202, 204).
pub fn graph_ok(
    status: u16,
    body: Option<&serde_json::Value>,
    extra: &[(&str, String)],
    vars: &Vars,
) -> HttpResponse {
    match body {
        Some(body) => graph_ok_json(status, body, extra, vars),
        None => response(
            status,
            &parsed().graph_headers_no_body,
            extra,
            vars,
            Bytes::new(),
        ),
    }
}

/// A Graph success with a JSON body serialised straight from `body`.
pub fn graph_ok_json<T: serde::Serialize>(
    status: u16,
    body: &T,
    extra: &[(&str, String)],
    vars: &Vars,
) -> HttpResponse {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    // Serialised into a buffer kept per thread, then copied at its exact size: the journal
    // keeps every reply body of a replay, so slack capacity would be kept too.
    let bytes = BUFFER.with_borrow_mut(|buffer| {
        buffer.clear();
        serde_json::to_writer(&mut *buffer, body).expect("reply bodies serialise");
        Bytes::copy_from_slice(buffer)
    });
    response(status, &parsed().graph_headers, extra, vars, bytes)
}

/// The raw IIS 503 page some Graph front ends return.
pub fn graph_html_unavailable() -> HttpResponse {
    let reply = &graph_file().html_unavailable;
    let content_type = reply
        .content_type
        .clone()
        .unwrap_or_else(|| "text/html".into());
    response(
        reply.status,
        &[],
        &[("Content-Type", content_type)],
        &Vars::default(),
        Bytes::from(reply.body.clone()),
    )
}

/// Delta paging defaults.
pub fn graph_delta_settings() -> DeltaSettings {
    graph_file().delta
}

/// Every catalogue note marked as a choice, for the docs and for review.
pub fn choices() -> Vec<(String, String)> {
    let entra = entra_file();
    let graph = graph_file();
    let mut out: Vec<(String, String)> = entra
        .errors
        .iter()
        .filter_map(|(k, e)| e.choice.clone().map(|c| (format!("entra.{k}"), c)))
        .collect();
    out.extend(
        entra
            .throttled
            .choice
            .clone()
            .map(|c| ("entra.throttled".into(), c)),
    );
    out.extend(graph.choice.clone().map(|c| ("graph.headers".into(), c)));
    out.extend(
        graph
            .errors
            .iter()
            .filter_map(|(k, e)| e.choice.clone().map(|c| (format!("graph.{k}"), c))),
    );
    out
}

/// Where each catalogue entry's facts come from (`source`), for the docs.
pub fn sources() -> Vec<(String, String)> {
    let entra = entra_file();
    let graph = graph_file();
    let mut out: Vec<(String, String)> = entra
        .errors
        .iter()
        .filter_map(|(k, e)| e.source.clone().map(|s| (format!("entra.{k}"), s)))
        .collect();
    out.extend(
        graph
            .errors
            .iter()
            .filter_map(|(k, e)| e.source.clone().map(|s| (format!("graph.{k}"), s))),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_replaces_known_placeholders_and_keeps_unknown_ones() {
        let vars = Vars::default()
            .set("a", "1")
            .set("b", "two")
            .set("a", "one");
        assert_eq!(vars.fill("x${a}y${b}z${c}${"), "xoneytwoz${c}${");
        assert_eq!(vars.fill("no placeholders"), "no placeholders");
    }

    #[test]
    fn every_entra_error_has_exactly_one_catalogue_entry() {
        let file = entra_file();
        for error in EntraError::ALL {
            assert!(
                file.errors.contains_key(error.key()),
                "missing {}",
                error.key()
            );
        }
        for key in file.errors.keys() {
            assert!(
                EntraError::from_key(key).is_some(),
                "catalogue entry {key} has no variant"
            );
        }
    }

    #[test]
    fn every_graph_error_has_exactly_one_catalogue_entry() {
        let file = graph_file();
        for error in GraphError::ALL {
            assert!(
                file.errors.contains_key(error.key()),
                "missing {}",
                error.key()
            );
        }
        for key in file.errors.keys() {
            assert!(
                GraphError::from_key(key).is_some(),
                "catalogue entry {key} has no variant"
            );
        }
    }

    #[test]
    fn catalogue_notes_every_choice() {
        assert!(
            choices()
                .iter()
                .any(|(k, _)| k == "entra.missing_credential")
        );
        assert!(sources().iter().any(|(k, _)| k == "entra.expired_secret"));
    }
}
