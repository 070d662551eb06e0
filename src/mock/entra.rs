//! The mock Entra ID v2.0 token endpoint (client credentials here; the delegated grants in
//! `grant.rs`), its discovery document, and the route to the authorization endpoint.
//!
//! Validation runs in a fixed order (method, tenant, parameters, app, credential, scope) and
//! each refusal is the catalogue reply Entra gives for it, so a client's classification of
//! credential versus transient failures meets the real bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::wire::{self, EntraError, Vars};
use super::{Ctx, HttpRequest, HttpResponse, header};
use chrono::{DateTime, Utc};

use crate::tenant::assertion::AssertionError;
use crate::tenant::{AssertionRefusal, CredentialError, Directory, Resource};

/// The operation name of a path, for faults and the journal.
pub fn operation(path: &str) -> &'static str {
    if path.ends_with("/oauth2/v2.0/token") {
        "token"
    } else if path.ends_with("/oauth2/v2.0/authorize") {
        "authorize"
    } else if path.ends_with("/v2.0/.well-known/openid-configuration") {
        "discovery"
    } else if path.ends_with("/discovery/v2.0/keys") {
        "keys"
    } else if path.ends_with("/adminconsent") {
        "adminconsent"
    } else {
        "other"
    }
}

/// Reply variables known from the request alone, so a forced catalogue reply (a `respond`
/// fault) reads like the real one: the app id, tenant and scope the client sent.
pub(crate) fn request_vars(
    vars: Vars,
    request: &HttpRequest,
    directory: &Directory,
    now: DateTime<Utc>,
) -> Vars {
    let tenant = request
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    let tenant_name = directory
        .tenant(tenant)
        .map_or(tenant, |t| t.domain.as_str())
        .to_string();
    let form = Form::parse(request);
    let basic = basic_credentials(request);
    let app_id = basic
        .map(|(id, _)| id)
        .or(form.get("client_id").map(str::to_string))
        .or_else(|| query_client_id(request));
    let app_name = app_id
        .as_deref()
        .and_then(|id| directory.home_tenant(id).and_then(|t| t.app(id)))
        .map_or_else(String::new, |a| a.display_name.clone());
    let redirect_uri = form.get("redirect_uri").unwrap_or("").to_string();
    let scope = form.get("scope").unwrap_or("").to_string();
    let thumbprint = form.get("client_assertion").and_then(assertion_thumbprint);
    let vars = assertion_vars(&AssertionError::UnknownKey { thumbprint }, now)
        .into_iter()
        .fold(vars, |vars, (name, value)| vars.set(name, value));
    vars.set("tenant", tenant)
        .set("tenant_name", tenant_name)
        .set("app_id", app_id.unwrap_or_default())
        .set("resource", scope.trim_end_matches("/.default"))
        .set("scope", scope)
        .set("grant_type", form.get("grant_type").unwrap_or(""))
        .set("parameter", "grant_type")
        .set("method", request.method().as_str())
        .set("app_name", app_name)
        .set("issued_at", assertion_time(now))
        .set("tokens_valid_from", assertion_time(now))
        .set("resource_app_id", Resource::Graph.app_id())
        .set(
            "max_lifetime",
            crate::tenant::SIGN_IN_FREQUENCY.num_seconds().to_string(),
        )
        .set("code_redirect_uri", redirect_uri.clone())
        .set("redirect_uri", redirect_uri)
}

/// `client_id` in an authorization request's query.
fn query_client_id(request: &HttpRequest) -> Option<String> {
    form_urlencoded::parse(request.uri().query()?.as_bytes())
        .find(|(k, _)| k == "client_id")
        .map(|(_, v)| v.into_owned())
}

/// The app a token request names (HTTP Basic or `client_id`), for faults scoped to an app.
pub(crate) fn requesting_app(request: &HttpRequest) -> Option<String> {
    basic_credentials(request)
        .map(|(id, _)| id)
        .or_else(|| Form::parse(request).get("client_id").map(str::to_string))
        .or_else(|| query_client_id(request))
}

pub(crate) fn handle(ctx: &mut Ctx<'_>, request: &HttpRequest) -> HttpResponse {
    let path = request.uri().path();
    let tenant = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    match operation(path) {
        "token" => token(ctx, &tenant, request),
        "authorize" => super::authorize::handle(ctx, &tenant, request),
        "discovery" => discovery(ctx, &tenant),
        "keys" => keys(ctx, &tenant),
        "adminconsent" => super::consent::handle(ctx, &tenant, request),
        _ => not_found(),
    }
}

fn not_found() -> HttpResponse {
    // Entra answers unknown paths with an HTML error page; clients never branch on it.
    http::Response::builder()
        .status(404)
        .header("Content-Type", "text/html; charset=utf-8")
        .body(bytes::Bytes::from_static(
            b"<html><body>404 Not Found</body></html>",
        ))
        .expect("static response is valid")
}

pub(super) fn error(
    ctx: &Ctx<'_>,
    error: EntraError,
    extra: &[(&'static str, String)],
) -> HttpResponse {
    let vars = extra
        .iter()
        .fold(ctx.vars.clone(), |v, (k, val)| v.set(k, val.clone()));
    wire::entra_error(error, &vars)
}

/// A token request's form.
pub(super) struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    pub(super) fn parse(request: &HttpRequest) -> Form {
        let is_form = header(request, "content-type").is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
        // Entra reads no parameters from a body of another type, so every one is "missing".
        let pairs = if is_form {
            form_urlencoded::parse(request.body())
                .into_owned()
                .collect()
        } else {
            Vec::new()
        };
        Form { pairs }
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// `client_secret_basic`: `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 2.3.1).
pub(super) fn basic_credentials(request: &HttpRequest) -> Option<(String, String)> {
    let value = header(request, "authorization")?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| -> String {
        form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(id), unescape(secret)))
}

fn token(ctx: &mut Ctx<'_>, tenant_ref: &str, request: &HttpRequest) -> HttpResponse {
    if request.method() != http::Method::POST {
        return error(
            ctx,
            EntraError::PostOnly,
            &[("method", request.method().to_string())],
        );
    }
    let form = Form::parse(request);
    if matches!(
        form.get("grant_type"),
        Some(super::grant::AUTHORIZATION_CODE | super::grant::REFRESH_TOKEN)
    ) {
        return super::grant::token(ctx, tenant_ref, request, &form);
    }
    let Some(tenant) = ctx.directory.tenant(tenant_ref) else {
        return error(
            ctx,
            EntraError::UnknownTenant,
            &[("tenant", tenant_ref.to_string())],
        );
    };
    let (tenant_id, tenant_name) = (tenant.id.clone(), tenant.domain.clone());
    let lifetime = tenant.settings.token_lifetime.as_secs();
    let basic = basic_credentials(request);
    let missing = |ctx: &Ctx<'_>, name: &str| {
        error(
            ctx,
            EntraError::MissingParameter,
            &[("parameter", name.to_string())],
        )
    };
    let Some(grant_type) = form.get("grant_type") else {
        return missing(ctx, "grant_type");
    };
    if grant_type != "client_credentials" {
        return error(
            ctx,
            EntraError::UnsupportedGrantType,
            &[("grant_type", grant_type.into())],
        );
    }
    let client_id = basic
        .as_ref()
        .map(|(id, _)| id.as_str())
        .or(form.get("client_id"));
    let Some(client_id) = client_id.filter(|id| !id.is_empty()).map(str::to_string) else {
        return missing(ctx, "client_id");
    };
    let Some(scope) = form.get("scope").map(str::to_string) else {
        return missing(ctx, "scope");
    };
    let app_id = match authenticate(ctx, &form, basic.as_ref(), &tenant_id, &client_id) {
        Ok(app_id) => app_id,
        Err(refused) => return *refused,
    };
    let resource = match parse_scope(&scope) {
        Ok(resource) => resource,
        Err(refusal) => {
            let (kind, vars) = scope_refusal(refusal, &scope, tenant_name);
            return error(ctx, kind, &vars);
        }
    };
    let token = ctx
        .directory
        .issue_token(&tenant_id, &app_id, resource, ctx.now)
        .expect("the app was authenticated under the lock just now");
    wire::entra_token(&token.value, lifetime, &ctx.vars)
}

/// The `client_assertion_type` of a client assertion (RFC 7523).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The client's secret (body or Basic) or, without one, its assertion, checked against the
/// directory: the app id, or Entra's refusal.
pub(super) fn authenticate(
    ctx: &Ctx<'_>,
    form: &Form,
    basic: Option<&(String, String)>,
    tenant_id: &str,
    client_id: &str,
) -> Result<String, Box<HttpResponse>> {
    let tenant_name = ctx
        .directory
        .tenant(tenant_id)
        .map_or(String::new(), |t| t.domain.clone());
    let names = [
        ("app_id", client_id.to_string()),
        ("tenant_name", tenant_name),
    ];
    let secret = form.get("client_secret").or(basic.map(|(_, s)| s.as_str()));
    let assertion = form.get("client_assertion").filter(|_| secret.is_none());
    let Some(assertion) = assertion else {
        return match ctx
            .directory
            .authenticate(tenant_id, client_id, secret, ctx.now)
        {
            Ok(app) => Ok(app.app_id.clone()),
            Err(refusal) => Err(Box::new(error(ctx, refusal_error(refusal), &names))),
        };
    };
    if form.get("client_assertion_type") != Some(JWT_BEARER) {
        let parameter = [("parameter", "client_assertion_type".to_string())];
        return Err(Box::new(error(
            ctx,
            EntraError::MissingParameter,
            &parameter,
        )));
    }
    match ctx
        .directory
        .authenticate_assertion(tenant_id, client_id, assertion, ctx.now)
    {
        Ok(app) => Ok(app.app_id.clone()),
        Err(AssertionRefusal::Client(refusal)) => {
            Err(Box::new(error(ctx, refusal_error(refusal), &names)))
        }
        Err(AssertionRefusal::Assertion(refusal)) => {
            let mut vars = assertion_vars(&refusal, ctx.now);
            vars.extend(names);
            Err(Box::new(error(ctx, assertion_error(&refusal), &vars)))
        }
    }
}

/// The Entra error for a refused client assertion.
fn assertion_error(refusal: &AssertionError) -> EntraError {
    match refusal {
        AssertionError::Malformed => EntraError::MalformedAssertion,
        AssertionError::UnknownKey { .. } => EntraError::UnknownCertificate,
        AssertionError::BadSignature(_) => EntraError::BadAssertionSignature,
        AssertionError::ExpiredKey(_) => EntraError::ExpiredCertificate,
        AssertionError::OutsideWindow { .. } => EntraError::AssertionTimeRange,
        AssertionError::Audience => EntraError::AssertionAudience,
        AssertionError::ClientMismatch => EntraError::AssertionClientMismatch,
    }
}

static KEY_DATE: crate::time::Pattern = crate::time::Pattern::new("%m/%d/%Y %H:%M:%S");
static ASSERTION_SECONDS: crate::time::Pattern = crate::time::Pattern::new("%Y-%m-%dT%H:%M:%S");

/// An instant as Entra's assertion messages show it: seven fractional digits.
pub(super) fn assertion_time(at: DateTime<Utc>) -> String {
    let ticks = at.timestamp_subsec_nanos() / 100;
    format!("{}.{ticks:07}Z", ASSERTION_SECONDS.format(at))
}

/// What an assertion refusal's message shows; every placeholder gets a value, so a forced
/// reply reads whole too.
fn assertion_vars(refusal: &AssertionError, now: DateTime<Utc>) -> Vec<(&'static str, String)> {
    let thumbprint_part = |thumbprint: Option<&str>| {
        thumbprint.map_or(String::new(), |t| {
            format!("Thumbprint of key used by client: '{t}', ")
        })
    };
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    let (thumbprint, key) = match refusal {
        AssertionError::UnknownKey { thumbprint } => (thumbprint.clone(), None),
        AssertionError::BadSignature(found) | AssertionError::ExpiredKey(found) => (
            Some(found.thumbprint.clone()),
            Some((found.start, found.end)),
        ),
        _ => (None, None),
    };
    let (nbf, exp) = match refusal {
        AssertionError::OutsideWindow { nbf, exp } => (*nbf, *exp),
        _ => (None, None),
    };
    let (key_start, key_end) = key.unwrap_or((epoch, epoch));
    vec![
        ("thumbprint_part", thumbprint_part(thumbprint.as_deref())),
        ("key_start", KEY_DATE.format(key_start)),
        ("key_end", KEY_DATE.format(key_end)),
        ("current_time", assertion_time(now)),
        ("valid_from", assertion_time(nbf.unwrap_or(epoch))),
        ("valid_until", assertion_time(exp.unwrap_or(epoch))),
    ]
}

/// The body as request ids are derived from it: a client assertion stands in by its `jti`,
/// since the rest names the host the client reached (its `aud`), which differs between the
/// in-memory and the socket wiring while the request is the same.
pub(crate) fn id_body(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if memchr::memmem::find(body, b"client_assertion=").is_none() {
        return std::borrow::Cow::Borrowed(body);
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| {
            let v = if k == "client_assertion" {
                assertion_jti(&v).unwrap_or_default()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    let mut out = form_urlencoded::Serializer::new(String::new());
    out.extend_pairs(pairs);
    std::borrow::Cow::Owned(out.finish().into_bytes())
}

/// The `n`th part of a JWT (0 header, 1 claims) as JSON.
fn jwt_part(assertion: &str, n: usize) -> Option<serde_json::Value> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let part = assertion.split('.').nth(n)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

fn assertion_jti(assertion: &str) -> Option<String> {
    Some(jwt_part(assertion, 1)?.get("jti")?.as_str()?.to_string())
}

/// The thumbprint an assertion's header names, uppercase hex (for a forced reply).
fn assertion_thumbprint(assertion: &str) -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = jwt_part(assertion, 0)?;
    let named = header.get("x5t#S256").or(header.get("x5t"))?.as_str()?;
    let bytes = URL_SAFE_NO_PAD.decode(named).ok()?;
    Some(crate::tenant::certificate::upper_hex(&bytes))
}

/// The Entra error for a refused client credential.
fn refusal_error(refusal: CredentialError) -> EntraError {
    match refusal {
        CredentialError::UnknownTenant => EntraError::UnknownTenant,
        CredentialError::UnknownApp => EntraError::UnknownApp,
        CredentialError::MissingSecret => EntraError::MissingCredential,
        CredentialError::InvalidSecret => EntraError::InvalidSecret,
        CredentialError::ExpiredSecret => EntraError::ExpiredSecret,
    }
}

/// The Entra error for a `scope` that names no `{resource}/.default`, and its variables.
fn scope_refusal(
    refusal: ScopeError,
    scope: &str,
    tenant_name: String,
) -> (EntraError, Vec<(&'static str, String)>) {
    match refusal {
        ScopeError::NotDefault => (EntraError::InvalidScope, vec![("scope", scope.to_string())]),
        ScopeError::UnknownResource(resource) => (
            EntraError::InvalidResource,
            vec![("resource", resource), ("tenant_name", tenant_name)],
        ),
    }
}

enum ScopeError {
    NotDefault,
    UnknownResource(String),
}

/// Client credentials take exactly one `{resource}/.default` scope.
fn parse_scope(scope: &str) -> Result<Resource, ScopeError> {
    // Scopes are whitespace-delimited (RFC 6749 3.3); a stray newline is a separator too.
    let mut scopes = scope.split_whitespace();
    let (Some(only), None) = (scopes.next(), scopes.next()) else {
        return Err(ScopeError::NotDefault);
    };
    let Some(resource) = only.strip_suffix("/.default") else {
        return Err(ScopeError::NotDefault);
    };
    Resource::from_audience(resource).ok_or_else(|| ScopeError::UnknownResource(resource.into()))
}

/// The authority a `{tenant}` path stands for and the one issuers name (`{tenantid}` for
/// `common` and `organizations`), or the refusal for an unknown tenant.
fn authorities(ctx: &Ctx<'_>, tenant_ref: &str) -> Result<(String, String), Box<HttpResponse>> {
    let base = &ctx.config.endpoints.login_base;
    // `common` and `organizations` name no tenant: their issuer has the `{tenantid}`
    // placeholder that multi-tenant validators substitute (wire reference §8.1).
    if crate::tenant::is_broad(tenant_ref) {
        let broad = tenant_ref.to_ascii_lowercase();
        return Ok((format!("{base}/{broad}"), format!("{base}/{{tenantid}}")));
    }
    let Some(tenant) = ctx.directory.tenant(tenant_ref) else {
        let tenant = [("tenant", tenant_ref.to_string())];
        return Err(Box::new(error(
            ctx,
            EntraError::UnknownTenantDiscovery,
            &tenant,
        )));
    };
    let authority = format!("{base}/{}", tenant.id);
    Ok((authority.clone(), authority))
}

/// The keys document at `jwks_uri`: the key that signs ID tokens.
fn keys(ctx: &mut Ctx<'_>, tenant_ref: &str) -> HttpResponse {
    let (_, issuer_authority) = match authorities(ctx, tenant_ref) {
        Ok(authorities) => authorities,
        Err(refused) => return *refused,
    };
    let vars: Vars = ctx.vars.clone().set("authority", issuer_authority);
    let (key_use, issuer) = wire::entra_jwks(&vars);
    let key = crate::tenant::signing::id_token_key();
    let document = json!({"keys": [{
        "kty": "RSA",
        "use": key_use,
        "kid": key.kid,
        "x5t": key.kid,
        "n": key.n,
        "e": key.e,
        "x5c": [key.x5c],
        "issuer": issuer,
    }]});
    wire::entra_json(&document, &vars)
}

fn discovery(ctx: &mut Ctx<'_>, tenant_ref: &str) -> HttpResponse {
    let (authority, issuer_authority) = match authorities(ctx, tenant_ref) {
        Ok(authorities) => authorities,
        Err(refused) => return *refused,
    };
    let vars: Vars = ctx.vars.clone().set("authority", issuer_authority);
    let (issuer, region) = wire::entra_discovery(&vars);
    let document = json!({
        "token_endpoint": format!("{authority}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{authority}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("{}/oidc/userinfo", ctx.config.endpoints.graph_base),
        "authorization_endpoint": format!("{authority}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{authority}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{authority}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": format!("{authority}/kerberos"),
        "tenant_region_scope": region,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    });
    wire::entra_json(&document, &vars)
}
