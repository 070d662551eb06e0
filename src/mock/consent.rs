//! The mock admin-consent endpoint, `GET /{tenant|organizations}/v2.0/adminconsent` and the
//! legacy `GET /{tenant|common}/adminconsent`: no UI, the user `login_hint` names acts as the
//! tenant's admin, consents for every user and is redirected with `admin_consent=True`. It
//! grants no code or token; texts and parameter order live in `fixtures/wire/authorize.toml`.

use super::authorize::{
    self, AuthorizePage, AuthorizeRedirect, Query, Target, admin_consent_file, error_redirect_with,
    names, page, redirect,
};
use super::wire::Vars;
use super::{Ctx, HttpRequest, HttpResponse};
use crate::tenant::{AuthorizeRefusal, AuthorizeRequest};

pub(crate) fn handle(ctx: &mut Ctx<'_>, tenant_ref: &str, request: &HttpRequest) -> HttpResponse {
    let v2 = request.uri().path().ends_with("/v2.0/adminconsent");
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
        return page(
            AuthorizePage::MissingParameter,
            &vars.set("parameter", parameter),
        );
    };
    // The v2 endpoint takes a tenant or `organizations`, never `common` (D5).
    if v2 && tenant_ref.eq_ignore_ascii_case("common") {
        return page(AuthorizePage::AdminConsentCommon, &vars);
    }
    let target = Target {
        redirect_uri,
        state: query.get("state"),
        fragment: false,
    };
    let scope = query.get("scope").unwrap_or("");
    let consent = AuthorizeRequest {
        authority: tenant_ref,
        client_id,
        redirect_uri,
        scopes: scope.split_whitespace().collect(),
        login_hint: query.get("login_hint"),
        challenge: None,
        nonce: None,
        prompt: None,
    };
    let vars = names(ctx, &consent, vars);
    if let Err(refusal) = ctx.directory.check_client(&consent) {
        return refused(&refusal, &target, &vars);
    }
    if v2 && scope.is_empty() {
        let vars = vars.set("parameter", "scope");
        return error_redirect_with(AuthorizeRedirect::InvalidRequest, &target, &vars, &marker());
    }
    match ctx.directory.admin_consent(&consent) {
        Ok(tenant_id) => {
            let file = admin_consent_file();
            let order = if v2 { &file.v2 } else { &file.legacy };
            let params: Vec<(&str, &str)> = order
                .iter()
                .filter_map(|name| {
                    let value = match name.as_str() {
                        "admin_consent" => Some(file.value.as_str()),
                        "tenant" => Some(tenant_id.as_str()),
                        "scope" => Some(scope),
                        "state" => target.state,
                        _ => None,
                    };
                    value.map(|v| (name.as_str(), v))
                })
                .collect();
            redirect(file.status, &target, &params, &vars)
        }
        Err(refusal) => refused(&refusal, &target, &vars),
    }
}

/// `admin_consent=True`, which every admin-consent redirect carries (R14).
fn marker() -> [(&'static str, &'static str); 1] {
    [("admin_consent", admin_consent_file().value.as_str())]
}

/// A refusal as the authorization endpoint gives it, a redirect marked `admin_consent=True`.
fn refused(refusal: &AuthorizeRefusal, target: &Target<'_>, vars: &Vars) -> HttpResponse {
    let kind = match refusal {
        AuthorizeRefusal::UserNotInTenant => AuthorizeRedirect::UserNotInTenant,
        AuthorizeRefusal::UnknownResource(resource) => {
            let vars = vars.clone().set("resource", resource.clone());
            let kind = AuthorizeRedirect::InvalidResource;
            return error_redirect_with(kind, target, &vars, &marker());
        }
        other => return authorize::refused(other, target, vars),
    };
    error_redirect_with(kind, target, vars, &marker())
}
