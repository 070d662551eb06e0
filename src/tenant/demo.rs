//! The built-in demo tenant: one app that can send and read mail and manage its own secrets,
//! and one mailbox. `maildrill serve` uses it when no scenario is given; tests start from it.

use chrono::{DateTime, TimeDelta, Utc};

use super::{AppSpec, MailboxSpec, SecretSpec, TenantSettings, TenantSpec};

/// The demo tenant's id.
pub const TENANT_ID: &str = "4f3c9a2e-8b1d-4e6f-a5c7-2d9e0b1f3a64";
/// The demo tenant's initial domain.
pub const TENANT_DOMAIN: &str = "contoso.onmicrosoft.com";
/// The demo app's client id.
pub const APP_ID: &str = "9b2e7c41-3f5a-4d8b-b6e0-1c4a7f9d2e53";
/// The demo app's object id.
pub const APP_OBJECT_ID: &str = "c7d1e5a9-2b4f-4a6c-8e0d-5f3b1a9c7e24";
/// The demo mailbox.
pub const MAILBOX: &str = "mailman@contoso.onmicrosoft.com";
/// The demo mailbox's object id.
pub const MAILBOX_ID: &str = "e2a4c6b8-1d3f-4b5a-9c7e-6f8a0b2d4c16";

/// The demo tenant with one secret `secret`, valid from `start` for `lifetime`.
pub fn tenant(start: DateTime<Utc>, secret: &str, lifetime: TimeDelta) -> TenantSpec {
    TenantSpec {
        id: TENANT_ID.into(),
        domain: TENANT_DOMAIN.into(),
        settings: TenantSettings::default(),
        apps: vec![AppSpec {
            app_id: APP_ID.into(),
            object_id: APP_OBJECT_ID.into(),
            display_name: "Mailman".into(),
            secrets: vec![SecretSpec {
                value: secret.into(),
                display_name: "mailman-prod".into(),
                start,
                end: start + lifetime,
            }],
            certificates: vec![],
            roles: vec![],
            audience: Default::default(),
            redirect_uris: vec![],
        }],
        mailboxes: vec![MailboxSpec {
            id: MAILBOX_ID.into(),
            upn: MAILBOX.into(),
            display_name: "Mailman".into(),
        }],
        consents: vec![],
    }
}
