//! The mock authorization endpoint, `GET /{tenant|common|organizations}/oauth2/v2.0/authorize`:
//! no UI, it signs in as the user `login_hint` names, consents where the user's tenant lets
//! them, and redirects to the registered URI with a code. Refusals that cannot trust the
//! redirect URI are a sign-in page; the rest are redirects with `error`. Texts and statuses
//! live in `fixtures/wire/authorize.toml`; the directory decides.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::Bytes;
use serde::Deserialize;

use super::wire::{self, HeaderTemplate, Vars};
use super::{Ctx, HttpRequest, HttpResponse};
use crate::tenant::{
    AuthorizeRefusal, AuthorizeRequest, Authorized, Challenge, ChallengeMethod, Prompt,
};

/// A refusal shown on the sign-in page, named as in `fixtures/wire/authorize.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[expect(
    missing_docs,
    reason = "each variant is named for its catalogue key, documented in fixtures/wire/"
)]
pub enum AuthorizePage {
    UnknownTenant,
    UnknownApp,
    NotMultiTenant,
    RedirectUriMismatch,
    AppDisabled,
    UnknownUser,
    MissingParameter,
    UserDisabled,
    AdminConsentCommon,
}

/// A refusal redirected to the client, named as in `fixtures/wire/authorize.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[expect(
    missing_docs,
    reason = "each variant is named for its catalogue key, documented in fixtures/wire/"
)]
pub enum AuthorizeRedirect {
    UserNotInTenant,
    ConsentRequired,
    ConsentBlocked,
    InvalidRequest,
    UnsupportedResponseType,
    InvalidResource,
}

impl AuthorizePage {
    /// Every variant.
    pub const ALL: [AuthorizePage; 9] = [
        AuthorizePage::UnknownTenant,
        AuthorizePage::UnknownApp,
        AuthorizePage::NotMultiTenant,
        AuthorizePage::RedirectUriMismatch,
        AuthorizePage::AppDisabled,
        AuthorizePage::UnknownUser,
        AuthorizePage::MissingParameter,
        AuthorizePage::UserDisabled,
        AuthorizePage::AdminConsentCommon,
    ];

    /// The catalogue key.
    pub fn key(self) -> &'static str {
        match self {
            AuthorizePage::UnknownTenant => "unknown_tenant",
            AuthorizePage::UnknownApp => "unknown_app",
            AuthorizePage::NotMultiTenant => "not_multi_tenant",
            AuthorizePage::RedirectUriMismatch => "redirect_uri_mismatch",
            AuthorizePage::AppDisabled => "app_disabled",
            AuthorizePage::UnknownUser => "unknown_user",
            AuthorizePage::MissingParameter => "missing_parameter",
            AuthorizePage::UserDisabled => "user_disabled",
            AuthorizePage::AdminConsentCommon => "admin_consent_common",
        }
    }
}

impl AuthorizeRedirect {
    /// Every variant.
    pub const ALL: [AuthorizeRedirect; 6] = [
        AuthorizeRedirect::UserNotInTenant,
        AuthorizeRedirect::ConsentRequired,
        AuthorizeRedirect::ConsentBlocked,
        AuthorizeRedirect::InvalidRequest,
        AuthorizeRedirect::UnsupportedResponseType,
        AuthorizeRedirect::InvalidResource,
    ];

    /// The catalogue key.
    pub fn key(self) -> &'static str {
        match self {
            AuthorizeRedirect::UserNotInTenant => "user_not_in_tenant",
            AuthorizeRedirect::ConsentRequired => "consent_required",
            AuthorizeRedirect::ConsentBlocked => "consent_blocked",
            AuthorizeRedirect::InvalidRequest => "invalid_request",
            AuthorizeRedirect::UnsupportedResponseType => "unsupported_response_type",
            AuthorizeRedirect::InvalidResource => "invalid_resource",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    #[expect(dead_code, reason = "documentation in the catalogue file")]
    choice: String,
    headers: Vec<(String, String)>,
    success: SuccessFile,
    admin_consent: AdminConsentFile,
    page: PageFile,
    pages: BTreeMap<String, Entry>,
    redirects: BTreeMap<String, RedirectEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuccessFile {
    status: u16,
    session_state: bool,
}

/// The admin-consent endpoint's success redirect.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminConsentFile {
    pub(super) status: u16,
    /// The value of `admin_consent`.
    pub(super) value: String,
    /// The success parameters of the v2 endpoint, in order.
    pub(super) v2: Vec<String>,
    /// The success parameters of the legacy endpoint, in order.
    pub(super) legacy: Vec<String>,
    #[expect(dead_code, reason = "documentation in the catalogue file")]
    source: String,
    #[expect(dead_code, reason = "documentation in the catalogue file")]
    choice: String,
}

/// The admin-consent endpoint's wire facts.
pub(super) fn admin_consent_file() -> &'static AdminConsentFile {
    &catalogue().file.admin_consent
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageFile {
    status: u16,
    content_type: String,
    template: String,
    #[expect(dead_code, reason = "documentation in the catalogue file")]
    choice: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    code: u32,
    description: String,
    #[serde(default)]
    #[expect(dead_code, reason = "documentation in the catalogue file")]
    source: Option<String>,
    #[serde(default)]
    #[expect(dead_code, reason = "documentation in the catalogue file")]
    choice: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedirectEntry {
    error: String,
    #[serde(default)]
    code: Option<u32>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    subcode: Option<String>,
    #[serde(default)]
    #[expect(dead_code, reason = "documentation in the catalogue file")]
    source: Option<String>,
    #[serde(default)]
    #[expect(dead_code, reason = "documentation in the catalogue file")]
    choice: Option<String>,
}

struct Catalogue {
    file: CatalogueFile,
    headers: Vec<HeaderTemplate>,
}

fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        let file: CatalogueFile =
            toml::from_str(include_str!("../../fixtures/wire/authorize.toml"))
                .expect("fixtures/wire/authorize.toml is valid; authorize::tests load it");
        let headers = wire::templates(&file.headers);
        Catalogue { file, headers }
    })
}

/// The query of an authorization request (or the form of a POSTed one).
pub(super) struct Query(Vec<(String, String)>);

impl Query {
    pub(super) fn parse(request: &HttpRequest) -> Query {
        let bytes: &[u8] = match request.method() {
            &http::Method::POST => request.body(),
            _ => request.uri().query().unwrap_or("").as_bytes(),
        };
        Query(form_urlencoded::parse(bytes).into_owned().collect())
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// Where a redirect goes and what it echoes.
pub struct Target<'a> {
    pub(super) redirect_uri: &'a str,
    pub(super) state: Option<&'a str>,
    pub(super) fragment: bool,
}

pub(crate) fn handle(ctx: &mut Ctx<'_>, tenant_ref: &str, request: &HttpRequest) -> HttpResponse {
    let query = Query::parse(request);
    let vars = ctx
        .vars
        .clone()
        .set("tenant", tenant_ref)
        .set("tenant_name", tenant_ref)
        .set("app_id", query.get("client_id").unwrap_or(""))
        .set("redirect_uri", query.get("redirect_uri").unwrap_or(""));
    let (Some(client_id), Some(redirect_uri)) = (query.get("client_id"), query.get("redirect_uri"))
    else {
        let parameter = if query.get("client_id").is_none() {
            "client_id"
        } else {
            "redirect_uri"
        };
        let vars = vars.set("parameter", parameter);
        return page(AuthorizePage::MissingParameter, &vars);
    };
    let hybrid = query
        .get("response_type")
        .is_some_and(|t| response_type(t) == Some(true));
    // The hybrid flow answers in the fragment: its ID token must not reach server logs.
    let target = Target {
        redirect_uri,
        state: query.get("state"),
        fragment: hybrid || query.get("response_mode") == Some("fragment"),
    };
    let scopes: Vec<&str> = query
        .get("scope")
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let sign_in = AuthorizeRequest {
        authority: tenant_ref,
        client_id,
        redirect_uri,
        scopes,
        login_hint: query.get("login_hint"),
        challenge: challenge(&query),
        nonce: query.get("nonce"),
        prompt: prompt(query.get("prompt")),
    };
    let vars = names(ctx, &sign_in, vars);
    if let Err(refusal) = ctx.directory.check_client(&sign_in) {
        return refused(&refusal, &target, &vars);
    }
    if let Some((kind, extra)) = request_problem(&query) {
        let vars = extra.into_iter().fold(vars, |v, (k, val)| v.set(k, val));
        return error_redirect(kind, &target, &vars);
    }
    match ctx.directory.authorize(&sign_in, ctx.now) {
        Ok(authorized) => success(ctx, &authorized, hybrid, &target, &vars),
        Err(refusal) => refused(&refusal, &target, &vars),
    }
}

/// The success redirect: `code`, the hybrid flow's `id_token`, `state`, `session_state`.
fn success(
    ctx: &Ctx<'_>,
    authorized: &Authorized,
    hybrid: bool,
    target: &Target<'_>,
    vars: &Vars,
) -> HttpResponse {
    let id_token = hybrid.then(|| {
        let base = &ctx.config.endpoints.login_base;
        ctx.directory
            .hybrid_id_token(&authorized.code, base, ctx.now)
    });
    let mut params = vec![("code", authorized.code.as_str())];
    params.extend(id_token.as_deref().map(|t| ("id_token", t)));
    params.extend(target.state.map(|s| ("state", s)));
    if catalogue().file.success.session_state {
        params.push(("session_state", authorized.session_state.as_str()));
    }
    redirect(catalogue().file.success.status, target, &params, vars)
}

/// Whether a `response_type` is the hybrid `code id_token` (in either order), `code` alone,
/// or neither (`None`).
fn response_type(value: &str) -> Option<bool> {
    let mut types: Vec<&str> = value.split_whitespace().collect();
    types.sort_unstable();
    match types.as_slice() {
        ["code"] => Some(false),
        ["code", "id_token"] => Some(true),
        _ => None,
    }
}

/// What is wrong with a request whose client and redirect URI are fine: redirected.
fn request_problem(query: &Query) -> Option<(AuthorizeRedirect, Vec<(&'static str, String)>)> {
    let invalid = |parameter: &str| {
        let vars = vec![("parameter", parameter.to_string())];
        Some((AuthorizeRedirect::InvalidRequest, vars))
    };
    let Some(response_type) = query.get("response_type") else {
        return invalid("response_type");
    };
    let Some(hybrid) = self::response_type(response_type) else {
        let vars = vec![("response_type", response_type.to_string())];
        return Some((AuthorizeRedirect::UnsupportedResponseType, vars));
    };
    if query.get("scope").is_none() {
        return invalid("scope");
    }
    // The hybrid flow needs a nonce to bind its ID token to the request (D1).
    if hybrid && query.get("nonce").is_none() {
        return invalid("nonce");
    }
    None
}

/// PKCE: `code_challenge` with its method (`plain` when absent, RFC 7636 4.3).
fn challenge(query: &Query) -> Option<Challenge> {
    let value = query.get("code_challenge")?.to_string();
    let method = match query.get("code_challenge_method") {
        Some(m) if m.eq_ignore_ascii_case("S256") => ChallengeMethod::S256,
        _ => ChallengeMethod::Plain,
    };
    Some(Challenge { value, method })
}

fn prompt(value: Option<&str>) -> Option<Prompt> {
    match value? {
        "login" => Some(Prompt::Login),
        "none" => Some(Prompt::None),
        "consent" => Some(Prompt::Consent),
        "select_account" => Some(Prompt::SelectAccount),
        _ => None,
    }
}

/// The names texts quote: the app's display name, the authority's tenant domain, and the
/// tenant of the user `login_hint` names.
pub(super) fn names(ctx: &Ctx<'_>, request: &AuthorizeRequest<'_>, vars: Vars) -> Vars {
    let directory = &*ctx.directory;
    let app_name = directory
        .home_tenant(request.client_id)
        .and_then(|t| t.app(request.client_id))
        .map_or_else(String::new, |a| a.display_name.clone());
    let tenant_name = directory
        .tenant(request.authority)
        .map_or_else(|| request.authority.to_string(), |t| t.domain.clone());
    let user_tenant = request
        .login_hint
        .and_then(|hint| {
            directory
                .tenants()
                .iter()
                .find(|t| t.mailboxes.iter().any(|m| m.upn.eq_ignore_ascii_case(hint)))
        })
        .map_or_else(String::new, |t| t.id.clone());
    vars.set("app_name", app_name)
        .set("tenant_name", tenant_name)
        .set("user_tenant", user_tenant)
}

/// A refusal as the user (page) or the client (redirect) sees it.
pub(super) fn refused(
    refusal: &AuthorizeRefusal,
    target: &Target<'_>,
    vars: &Vars,
) -> HttpResponse {
    let shown = match refusal {
        AuthorizeRefusal::UnknownTenant => AuthorizePage::UnknownTenant,
        AuthorizeRefusal::UnknownApp => AuthorizePage::UnknownApp,
        AuthorizeRefusal::NotMultiTenant => AuthorizePage::NotMultiTenant,
        AuthorizeRefusal::RedirectUriMismatch => AuthorizePage::RedirectUriMismatch,
        AuthorizeRefusal::AppDisabled => AuthorizePage::AppDisabled,
        AuthorizeRefusal::UnknownUser => AuthorizePage::UnknownUser,
        AuthorizeRefusal::UserDisabled => AuthorizePage::UserDisabled,
        AuthorizeRefusal::UserNotInTenant => {
            return error_redirect(AuthorizeRedirect::UserNotInTenant, target, vars);
        }
        AuthorizeRefusal::ConsentBlocked => {
            return error_redirect(AuthorizeRedirect::ConsentBlocked, target, vars);
        }
        AuthorizeRefusal::ConsentRequired => {
            return error_redirect(AuthorizeRedirect::ConsentRequired, target, vars);
        }
        AuthorizeRefusal::UnknownResource(resource) => {
            let vars = vars.clone().set("resource", resource.clone());
            return error_redirect(AuthorizeRedirect::InvalidResource, target, &vars);
        }
    };
    page(shown, vars)
}

/// A text followed by Trace ID, Correlation ID and Timestamp, as Entra's descriptions end.
fn described(text: &str, vars: &Vars) -> String {
    format!(
        "{} Trace ID: {} Correlation ID: {} Timestamp: {}",
        vars.fill(text),
        vars.fill("${trace_id}"),
        vars.fill("${correlation_id}"),
        vars.fill("${timestamp}"),
    )
}

/// The sign-in page with a refusal.
pub fn page(kind: AuthorizePage, vars: &Vars) -> HttpResponse {
    let catalogue = catalogue();
    let entry = catalogue
        .file
        .pages
        .get(kind.key())
        .expect("every AuthorizePage has a catalogue entry");
    let vars = vars
        .clone()
        .set("code", entry.code.to_string())
        .set("message", vars.fill(&entry.description));
    let body = Bytes::from(vars.html_escaped().fill(&catalogue.file.page.template));
    let content_type = [("Content-Type", catalogue.file.page.content_type.clone())];
    wire::response(
        catalogue.file.page.status,
        &catalogue.headers,
        &content_type,
        &vars,
        body,
    )
}

/// A refusal redirected to the client: `error`, `error_description`, `error_uri` (or
/// `error_subcode`), `state`.
pub fn error_redirect(kind: AuthorizeRedirect, target: &Target<'_>, vars: &Vars) -> HttpResponse {
    error_redirect_with(kind, target, vars, &[])
}

/// An error redirect with `extra` parameters before `state` (the admin-consent endpoint's
/// `admin_consent=True`).
pub(super) fn error_redirect_with(
    kind: AuthorizeRedirect,
    target: &Target<'_>,
    vars: &Vars,
    extra: &[(&str, &str)],
) -> HttpResponse {
    let entry = catalogue()
        .file
        .redirects
        .get(kind.key())
        .expect("every AuthorizeRedirect has a catalogue entry");
    let description = entry.description.as_deref().map(|d| described(d, vars));
    let error_uri = entry
        .code
        .map(|c| format!("https://login.microsoftonline.com/error?code={c}"));
    let mut params: Vec<(&str, &str)> = vec![("error", entry.error.as_str())];
    params.extend(description.as_deref().map(|d| ("error_description", d)));
    params.extend(error_uri.as_deref().map(|u| ("error_uri", u)));
    params.extend(entry.subcode.as_deref().map(|s| ("error_subcode", s)));
    params.extend(extra);
    params.extend(target.state.map(|s| ("state", s)));
    redirect(302, target, &params, vars)
}

/// A redirect to the client's URI with `params` in its query (or fragment).
pub(super) fn redirect(
    status: u16,
    target: &Target<'_>,
    params: &[(&str, &str)],
    vars: &Vars,
) -> HttpResponse {
    let mut encoded = form_urlencoded::Serializer::new(String::new());
    encoded.extend_pairs(params);
    let separator = match (target.fragment, target.redirect_uri.contains('?')) {
        (true, _) => '#',
        (false, true) => '&',
        (false, false) => '?',
    };
    let location = format!("{}{separator}{}", target.redirect_uri, encoded.finish());
    wire::response(
        status,
        &catalogue().headers,
        &[("Location", location)],
        vars,
        Bytes::new(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_authorize_refusal_has_exactly_one_catalogue_entry() {
        let file = &catalogue().file;
        let pages: Vec<&str> = AuthorizePage::ALL.iter().map(|p| p.key()).collect();
        let redirects: Vec<&str> = AuthorizeRedirect::ALL.iter().map(|r| r.key()).collect();
        assert_eq!(
            file.pages
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .len(),
            pages.len()
        );
        for key in file.pages.keys() {
            assert!(pages.contains(&key.as_str()), "page {key} has no variant");
        }
        assert_eq!(file.redirects.len(), redirects.len());
        for key in file.redirects.keys() {
            assert!(
                redirects.contains(&key.as_str()),
                "redirect {key} has no variant"
            );
        }
    }
}
