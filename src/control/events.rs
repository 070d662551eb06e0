//! The control API's user- and tenant-level events for a multi-tenant app: what the timeline's
//! `revoke-sessions`, `withdraw-consent` and the like do, for a test driving `serve`.

use serde::Deserialize;

use super::problem::Problem;
use super::{Answer, Inner, no_content};
use crate::tenant::{Directory, SignInAudience, TenantEvent, UserEvent};
use crate::time::Clock as _;

/// `POST users/{upn}/events`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"event": "reset-password"}))]
pub struct UserEventCall {
    /// What happens to the user: `revoke-sessions`, `reset-password`, `idle-refresh-tokens`,
    /// `require-mfa`, `block-by-conditional-access`, `expire-mfa`, `require-mfa-enrollment`,
    /// `enforce-sign-in-frequency`, `disable-user` or `enable-user`.
    pub event: UserEvent,
}

/// `POST tenants/{tenant}/events`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"event": "disable-app"}))]
pub struct TenantEventCall {
    /// What happens in the tenant: `withdraw-consent`, `disable-app` or `enable-app`.
    pub event: TenantEvent,
    /// The app's client id (default: the first multi-tenant app).
    pub app: Option<String>,
}

pub(super) fn user_event(inner: &Inner, upn: &str, call: UserEventCall) -> Answer {
    let now = inner.clock.now_utc();
    let mut directory = Directory::lock(&inner.parts.directory);
    let Some(tenant) = directory.user_tenant(upn).map(str::to_string) else {
        let detail = format!("no user `{upn}` in the tenant or its customers");
        return Err(Problem::not_found(Some("upn"), detail));
    };
    directory.user_event(&tenant, upn, call.event, now);
    Ok(no_content())
}

pub(super) fn tenant_event(inner: &Inner, tenant: &str, call: TenantEventCall) -> Answer {
    let mut directory = Directory::lock(&inner.parts.directory);
    let app = call.app.or_else(|| {
        directory
            .tenants()
            .iter()
            .flat_map(|t| &t.apps)
            .find(|a| a.audience == SignInAudience::MultiTenant)
            .map(|a| a.app_id.clone())
    });
    let Some(app) = app else {
        let detail = "no multi-tenant app registration: name one with `app`";
        return Err(Problem::invalid("app", detail));
    };
    if !directory.tenant_event(tenant, &app, call.event) {
        let detail = format!("no tenant `{tenant}` with a service principal of `{app}`");
        return Err(Problem::not_found(Some("tenant"), detail));
    }
    Ok(no_content())
}
