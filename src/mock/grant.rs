//! The token endpoint's delegated grants, `authorization_code` and `refresh_token`, for a
//! confidential (multi-tenant) client.
//!
//! The client authenticates first, against the app's registration in its home tenant, with
//! the same checks as client credentials: so an expired secret refuses every user's refresh
//! with `invalid_client` AADSTS7000222 whatever the user's grant, and a new secret makes the
//! same refresh tokens work again (they belong to the client id, not to a secret). Only then
//! does the directory judge the grant, the user and the user's tenant.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::entra::{Form, assertion_time, authenticate, basic_credentials, error};
use super::wire::{self, DelegatedBody, EntraError};
use super::{Ctx, HttpRequest, HttpResponse};
use crate::tenant::{
    DelegatedTokens, GrantError, GrantKind, GrantRequest, Requirement, SignInAudience, is_broad,
};

/// `grant_type` of a code redemption.
pub const AUTHORIZATION_CODE: &str = "authorization_code";
/// `grant_type` of a refresh.
pub const REFRESH_TOKEN: &str = "refresh_token";

/// Answers a delegated token request; `form.grant_type` is one of the two grants.
pub(super) fn token(
    ctx: &mut Ctx<'_>,
    tenant_ref: &str,
    request: &HttpRequest,
    form: &Form,
) -> HttpResponse {
    let missing = |ctx: &Ctx<'_>, name: &str| {
        error(
            ctx,
            EntraError::MissingParameter,
            &[("parameter", name.to_string())],
        )
    };
    let tenant_name = match ctx.directory.tenant(tenant_ref) {
        Some(tenant) => tenant.domain.clone(),
        None if is_broad(tenant_ref) => tenant_ref.to_string(),
        None => {
            let tenant = [("tenant", tenant_ref.to_string())];
            return error(ctx, EntraError::UnknownTenant, &tenant);
        }
    };
    let basic = basic_credentials(request);
    let client_id = basic
        .as_ref()
        .map(|(id, _)| id.as_str())
        .or(form.get("client_id"));
    let Some(client_id) = client_id.filter(|id| !id.is_empty()).map(str::to_string) else {
        return missing(ctx, "client_id");
    };
    let grant = match read_grant(form) {
        Ok(grant) => grant,
        Err(parameter) => return missing(ctx, parameter),
    };
    ctx.user = ctx.directory.grant_holder(grant);
    let Some((home_id, app_name, audience)) = ctx.directory.home_tenant(&client_id).map(|t| {
        let app = t.app(&client_id).expect("home_tenant found it");
        (t.id.clone(), app.display_name.clone(), app.audience)
    }) else {
        let names = [("app_id", client_id), ("tenant_name", tenant_name)];
        return error(ctx, EntraError::UnknownApp, &names);
    };
    let names = vec![
        ("app_id", client_id.clone()),
        ("app_name", app_name),
        ("tenant_name", tenant_name),
    ];
    if audience == SignInAudience::SingleTenant && is_broad(tenant_ref) {
        return error(ctx, EntraError::NotMultiTenant, &names);
    }
    if let Err(refused) = authenticate(ctx, form, basic.as_ref(), &home_id, &client_id) {
        return *refused;
    }
    let scopes = form.get("scope").map(|s| s.split_whitespace().collect());
    let request_grant = GrantRequest {
        client_id: &client_id,
        authority: tenant_ref,
        grant,
        scopes,
        login_base: &ctx.config.endpoints.login_base,
    };
    match ctx.directory.redeem(&request_grant, ctx.now) {
        Ok(tokens) => success(ctx, &tokens, form),
        Err(refusal) => {
            // The refusal's own variables last: they name the user's tenant, not the path's.
            let (kind, vars) = grant_error(&refusal, form);
            let mut all = names;
            all.extend(vars);
            error(ctx, kind, &all)
        }
    }
}

/// The success body; `client_info` (base64url `{"uid","utid"}`) when the form asks for it.
fn success(ctx: &Ctx<'_>, tokens: &DelegatedTokens, form: &Form) -> HttpResponse {
    let client_info = (form.get("client_info") == Some("1")).then(|| {
        let info = serde_json::json!({"uid": tokens.user_id, "utid": tokens.tenant_id});
        URL_SAFE_NO_PAD.encode(info.to_string())
    });
    let body = DelegatedBody {
        scope: &tokens.scope,
        expires_in: tokens.expires_in,
        refresh_token: tokens.refresh_token.as_deref(),
        id_token: tokens.id_token.as_deref(),
        client_info: client_info.as_deref(),
    };
    wire::entra_delegated_token(&tokens.access.value, body, &ctx.vars)
}

/// The grant a form carries, or the parameter it lacks.
fn read_grant(form: &Form) -> Result<GrantKind<'_>, &'static str> {
    if form.get("grant_type") == Some(REFRESH_TOKEN) {
        let token = form.get("refresh_token").ok_or("refresh_token")?;
        return Ok(GrantKind::Refresh { token });
    }
    let code = form.get("code").ok_or("code")?;
    let redirect_uri = form.get("redirect_uri").ok_or("redirect_uri")?;
    Ok(GrantKind::Code {
        code,
        redirect_uri,
        verifier: form.get("code_verifier"),
    })
}

/// The Entra error for a refused grant, and the variables its text needs.
fn grant_error(refusal: &GrantError, form: &Form) -> (EntraError, Vec<(&'static str, String)>) {
    match refusal {
        GrantError::InvalidCode => (EntraError::InvalidCode, vec![]),
        GrantError::CodeRedeemed => (EntraError::CodeRedeemed, vec![]),
        GrantError::CodeExpired => (EntraError::CodeExpired, vec![]),
        GrantError::RedirectMismatch(expected) => (
            EntraError::RedirectMismatch,
            vec![
                (
                    "redirect_uri",
                    form.get("redirect_uri").unwrap_or("").into(),
                ),
                ("code_redirect_uri", expected.clone()),
            ],
        ),
        GrantError::PkceMismatch => (EntraError::PkceMismatch, vec![]),
        GrantError::CodeForOtherTenant => (EntraError::CodeOtherTenant, vec![]),
        GrantError::UserDisabled => (EntraError::UserDisabled, vec![]),
        GrantError::SignInFrequency {
            issued_at,
            max_lifetime,
        } => (
            EntraError::SignInFrequency,
            vec![
                ("issued_at", assertion_time(*issued_at)),
                ("max_lifetime", max_lifetime.num_seconds().to_string()),
            ],
        ),
        GrantError::InvalidRefreshToken => (EntraError::InvalidRefreshToken, vec![]),
        GrantError::Inactive(issued_at) => (
            EntraError::RefreshTokenInactive,
            vec![("issued_at", assertion_time(*issued_at))],
        ),
        GrantError::Revoked {
            issued_at,
            valid_from,
        } => (
            EntraError::GrantRevoked,
            vec![
                ("issued_at", assertion_time(*issued_at)),
                ("tokens_valid_from", assertion_time(*valid_from)),
            ],
        ),
        GrantError::AppNotInTenant(domain) => (
            EntraError::UnknownApp,
            vec![("tenant_name", domain.clone())],
        ),
        GrantError::AppDisabled => (EntraError::AppDisabled, vec![]),
        GrantError::ConsentRequired => (EntraError::ConsentRequired, vec![]),
        GrantError::Interaction(requirement @ Requirement::Mfa, resource)
        | GrantError::Interaction(requirement @ Requirement::MfaExpired, resource)
        | GrantError::Interaction(requirement @ Requirement::MfaEnrollment, resource) => {
            let kind = match requirement {
                Requirement::MfaExpired => EntraError::MfaExpired,
                Requirement::MfaEnrollment => EntraError::MfaEnrollment,
                _ => EntraError::MfaRequired,
            };
            (
                kind,
                vec![("resource_app_id", resource.app_id().to_string())],
            )
        }
        GrantError::Interaction(Requirement::ConditionalAccess, _) => {
            (EntraError::ConditionalAccess, vec![])
        }
        GrantError::UnknownResource(resource) => (
            EntraError::InvalidResource,
            vec![("resource", resource.clone())],
        ),
    }
}
