//! The directory: tenants, apps, credentials, issued tokens and mailboxes, behind one lock.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::app::CredentialState;
use super::assertion::{self, AssertionError, Expected};
use super::certificate::{CertificateSpec, KeyCredential};
use super::delegated::{ConsentSpec, Delegated};
use super::token::{self, AccessToken, TokenClaims, TokenError};
use super::{App, AppSpec, Mailbox, MailboxSpec, PasswordCredential, Resource, SecretSpec};
use crate::seed::{Seed, SeedRng};

/// Per-tenant behaviour that scenarios tune.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSettings {
    /// How long a newly added secret keeps failing (measured 4-18 s; default 10 s).
    pub propagation_delay: Duration,
    /// `expires_in` of issued tokens (captured: 3599 s).
    pub token_lifetime: Duration,
    /// Delta and skip tokens older than this get `410 SyncStateNotFound`.
    pub delta_token_max_age: Duration,
    /// Whether SMTP AUTH is enabled for the tenant (`535 5.7.139` when not).
    pub smtp_auth_enabled: bool,
    /// How many sent messages each mailbox keeps for inspection.
    pub sent_capacity: usize,
    /// The tenant's app management policy on new secrets, if it has one.
    pub app_policy: Option<AppPolicy>,
    /// Whether users may consent to apps themselves (`false`: only an admin; a user meets
    /// *Need admin approval*).
    pub user_consent: bool,
}

/// The `passwordCredentials` restrictions of a tenant's app management policy
/// (`defaultAppManagementPolicy`), as `addPassword` meets them: `passwordAddition` (no new
/// secrets at all) and `passwordLifetime` (a longest lifetime).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPolicy {
    /// The policy's id, quoted in refusals.
    pub id: String,
    /// `false`: the `passwordAddition` restriction is enabled.
    pub secrets_allowed: bool,
    /// The `passwordLifetime` restriction's `maxLifetime`, if enabled.
    pub max_secret_lifetime: Option<Duration>,
}

/// Why an app management policy refuses a new secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyRefusal {
    /// `passwordAddition`: secrets are not allowed.
    SecretsNotAllowed,
    /// `passwordLifetime`: the requested lifetime is longer than the policy's maximum.
    LifetimeTooLong,
}

impl AppPolicy {
    /// The id of a tenant's `defaultAppManagementPolicy`, the policy that applies to every app
    /// without one of its own.
    pub const DEFAULT_ID: &'static str = "00000000-0000-0000-0000-000000000000";

    /// Whether a new secret valid from `start` to `end` may be added. Graph checks the type
    /// first: where secrets are not allowed, no lifetime is short enough.
    pub fn refuses(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Option<PolicyRefusal> {
        if !self.secrets_allowed {
            return Some(PolicyRefusal::SecretsNotAllowed);
        }
        let max = self.max_secret_lifetime?;
        (end - start > crate::time::to_chrono(max)).then_some(PolicyRefusal::LifetimeTooLong)
    }
}

impl Default for TenantSettings {
    fn default() -> Self {
        TenantSettings {
            propagation_delay: Duration::from_secs(10),
            token_lifetime: Duration::from_secs(3599),
            delta_token_max_age: Duration::from_secs(7 * 86_400),
            smtp_auth_enabled: true,
            sent_capacity: 100_000,
            app_policy: None,
            user_consent: true,
        }
    }
}

/// How a scenario or `serve` describes a tenant.
#[derive(Debug, Clone)]
pub struct TenantSpec {
    /// The tenant id (a GUID).
    pub id: String,
    /// The initial domain, e.g. `contoso.onmicrosoft.com`; also accepted in URLs.
    pub domain: String,
    /// Behaviour settings.
    pub settings: TenantSettings,
    /// App registrations.
    pub apps: Vec<AppSpec>,
    /// Mailboxes, one per user: the users who can sign in.
    pub mailboxes: Vec<MailboxSpec>,
    /// Service principals of other tenants' apps, as consent created them.
    pub consents: Vec<ConsentSpec>,
}

/// Configuration of a [`Directory`].
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// The run's seed: signing key, key ids and generated secrets derive from it.
    pub seed: Seed,
    /// The tenants.
    pub tenants: Vec<TenantSpec>,
}

/// A tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The tenant id.
    pub id: String,
    /// The initial domain.
    pub domain: String,
    /// Behaviour settings.
    pub settings: TenantSettings,
    /// App registrations; a deleted app is removed.
    pub apps: Vec<App>,
    /// Deleted apps, restorable as from the portal's "Deleted applications" (30 days there).
    pub deleted_apps: Vec<App>,
    /// Mailboxes.
    pub mailboxes: Vec<Mailbox>,
}

/// Why the token endpoint refuses a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// AADSTS90002.
    #[error("tenant not found")]
    UnknownTenant,
    /// AADSTS700016.
    #[error("application not found in the directory")]
    UnknownApp,
    /// AADSTS7000218.
    #[error("no client secret or assertion")]
    MissingSecret,
    /// AADSTS7000215.
    #[error("invalid client secret")]
    InvalidSecret,
    /// AADSTS7000222: expired, or not usable yet (before `startDateTime` or still propagating;
    /// a fresh secret was captured failing with this code).
    #[error("client secret expired or not yet valid")]
    ExpiredSecret,
}

/// Why the token endpoint refuses a client assertion: the tenant or the app, or the assertion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionRefusal {
    /// The tenant or the app is unknown.
    #[error(transparent)]
    Client(CredentialError),
    /// The assertion itself.
    #[error(transparent)]
    Assertion(AssertionError),
}

/// The shared directory handle the mocks hold.
pub type SharedDirectory = Arc<Mutex<Directory>>;

/// All tenants, and the tokens issued for them.
#[derive(Debug)]
pub struct Directory {
    tenants: Vec<Tenant>,
    pub(super) signing_key: [u8; 32],
    ids: SeedRng,
    /// Users' consents, codes and refresh tokens (`tenant/delegated.rs`).
    pub(super) delegated: Delegated,
    /// The newest tokens issued, so a resource checks a token it knows without verifying
    /// and decoding it again on every call (a delta sync every minute is most of a replay).
    recent: std::collections::VecDeque<AccessToken>,
}

/// How many issued tokens [`Directory::validate_token`] knows without verifying.
const RECENT_TOKENS: usize = 16;

impl Directory {
    /// Builds the directory at calendar instant `now` (secrets count as added then).
    pub fn new(config: &DirectoryConfig) -> Directory {
        let mut keys = config.seed.stream("tenant.signing-key");
        let mut ids = config.seed.stream("tenant.ids");
        let tenants = config
            .tenants
            .iter()
            .map(|spec| Tenant {
                id: spec.id.clone(),
                domain: spec.domain.clone(),
                settings: spec.settings.clone(),
                apps: spec
                    .apps
                    .iter()
                    .map(|a| App::from_spec(a, &mut || ids.guid()))
                    .collect(),
                deleted_apps: Vec::new(),
                mailboxes: spec
                    .mailboxes
                    .iter()
                    .map(|m| Mailbox::new(m, spec.settings.sent_capacity))
                    .collect(),
            })
            .collect();
        let delegated = Delegated::new(config.seed, &config.tenants);
        Directory {
            delegated,
            tenants,
            signing_key: keys.bytes(),
            ids,
            recent: std::collections::VecDeque::with_capacity(RECENT_TOKENS),
        }
    }

    /// Wraps the directory for sharing between mocks.
    pub fn shared(self) -> SharedDirectory {
        Arc::new(Mutex::new(self))
    }

    /// Locks a shared directory. A panic while holding the lock is a harness bug, and the
    /// state stays readable for the report, so poisoning is ignored.
    pub fn lock(shared: &SharedDirectory) -> MutexGuard<'_, Directory> {
        shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The tenants.
    pub fn tenants(&self) -> &[Tenant] {
        &self.tenants
    }

    /// A tenant by id or domain (case-insensitive), as the token endpoint's path names it.
    pub fn tenant(&self, id_or_domain: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| {
            t.id.eq_ignore_ascii_case(id_or_domain) || t.domain.eq_ignore_ascii_case(id_or_domain)
        })
    }

    pub(super) fn tenant_mut(&mut self, id: &str) -> Option<&mut Tenant> {
        self.tenants
            .iter_mut()
            .find(|t| t.id.eq_ignore_ascii_case(id) || t.domain.eq_ignore_ascii_case(id))
    }

    /// Checks a client's secret at `now` and returns the app it authenticates.
    pub fn authenticate(
        &self,
        tenant: &str,
        client_id: &str,
        secret: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<&App, CredentialError> {
        let tenant = self.tenant(tenant).ok_or(CredentialError::UnknownTenant)?;
        let app = tenant.app(client_id).ok_or(CredentialError::UnknownApp)?;
        let secret = secret
            .filter(|s| !s.is_empty())
            .ok_or(CredentialError::MissingSecret)?;
        let credential = app
            .credentials
            .iter()
            .find(|c| c.matches(secret))
            .ok_or(CredentialError::InvalidSecret)?;
        match credential.state_at(now, tenant.settings.propagation_delay) {
            CredentialState::Valid => Ok(app),
            CredentialState::Expired
            | CredentialState::NotYetValid
            | CredentialState::Propagating => Err(CredentialError::ExpiredSecret),
        }
    }

    /// Checks a client assertion at `now` and returns the app it authenticates: the tenant
    /// and the app as for a secret, then the assertion (`tenant::assertion`).
    pub fn authenticate_assertion(
        &self,
        tenant: &str,
        client_id: &str,
        assertion: &str,
        now: DateTime<Utc>,
    ) -> Result<&App, AssertionRefusal> {
        let tenant = self
            .tenant(tenant)
            .ok_or(AssertionRefusal::Client(CredentialError::UnknownTenant))?;
        let app = tenant
            .app(client_id)
            .ok_or(AssertionRefusal::Client(CredentialError::UnknownApp))?;
        let expected = Expected {
            tenant_id: &tenant.id,
            tenant_domain: &tenant.domain,
            client_id,
            propagation: tenant.settings.propagation_delay,
            now,
        };
        assertion::check(app, assertion, expected).map_err(AssertionRefusal::Assertion)?;
        Ok(app)
    }

    /// Issues an access token for `app_id` in `tenant` on `resource`, valid from `now`.
    pub fn issue_token(
        &mut self,
        tenant: &str,
        app_id: &str,
        resource: Resource,
        now: DateTime<Utc>,
    ) -> Option<AccessToken> {
        let uti = self.ids.string_from(URL_SAFE_ALPHABET, 22);
        let tenant = self.tenant(tenant)?;
        let app = tenant.app(app_id)?;
        let lifetime = tenant.settings.token_lifetime.as_secs() as i64;
        let claims = TokenClaims {
            aud: resource.audience().to_string(),
            iss: format!("https://sts.windows.net/{}/", tenant.id),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: now.timestamp() + lifetime,
            appid: app.app_id.clone(),
            idtyp: "app".to_string(),
            oid: app.object_id.clone(),
            roles: app.roles_on(resource),
            sub: app.object_id.clone(),
            tid: tenant.id.clone(),
            uti,
            ver: "1.0".to_string(),
            scp: None,
            upn: None,
        };
        Some(self.sign(claims))
    }

    /// Signs claims into a token the resources know without verifying it again.
    pub(super) fn sign(&mut self, claims: TokenClaims) -> AccessToken {
        let token = token::sign(claims, &self.signing_key);
        if self.recent.len() == RECENT_TOKENS {
            self.recent.pop_front();
        }
        self.recent.push_back(token.clone());
        token
    }

    /// Checks a bearer token for `resource` at `now`; `role` is the role the operation needs.
    pub fn validate_token(
        &self,
        bearer: Option<&str>,
        resource: Resource,
        role: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<std::sync::Arc<TokenClaims>, TokenError> {
        let bearer = bearer
            .filter(|b| !b.is_empty())
            .ok_or(TokenError::Missing)?;
        let claims = match self.recent.iter().rev().find(|t| t.value == bearer) {
            Some(known) => known.claims.clone(),
            None => std::sync::Arc::new(token::verify(bearer, &self.signing_key)?),
        };
        if now.timestamp() >= claims.exp || now.timestamp() < claims.nbf {
            return Err(TokenError::Expired(claims.expires_at()));
        }
        if claims.resource() != Some(resource) {
            return Err(TokenError::WrongAudience(claims.aud.clone()));
        }
        if let Some(role) = role
            && !claims.grants(role)
        {
            return Err(TokenError::MissingRole(role.to_string()));
        }
        Ok(claims)
    }

    /// The claims of a token this directory signed, whether or not it is still valid.
    pub fn token_claims(&self, bearer: &str) -> Option<std::sync::Arc<TokenClaims>> {
        match self.recent.iter().rev().find(|t| t.value == bearer) {
            Some(known) => Some(known.claims.clone()),
            None => token::verify(bearer, &self.signing_key)
                .ok()
                .map(std::sync::Arc::new),
        }
    }

    /// A mailbox by object id or UPN (case-insensitive) in the tenant `tenant_id`.
    pub fn mailbox(&self, tenant_id: &str, user: &str) -> Option<&Mailbox> {
        self.tenant(tenant_id)?
            .mailboxes
            .iter()
            .find(|m| m.matches(user))
    }

    /// A mailbox for changing.
    pub fn mailbox_mut(&mut self, tenant_id: &str, user: &str) -> Option<&mut Mailbox> {
        self.tenant_mut(tenant_id)?
            .mailboxes
            .iter_mut()
            .find(|m| m.matches(user))
    }

    /// An app by `appId` or object id, for the Graph applications API.
    pub fn app(&self, tenant_id: &str, id: &str) -> Option<&App> {
        self.tenant(tenant_id)?
            .apps
            .iter()
            .find(|a| a.app_id.eq_ignore_ascii_case(id) || a.object_id.eq_ignore_ascii_case(id))
    }

    fn app_mut(&mut self, tenant_id: &str, id: &str) -> Option<&mut App> {
        self.tenant_mut(tenant_id)?
            .apps
            .iter_mut()
            .find(|a| a.app_id.eq_ignore_ascii_case(id) || a.object_id.eq_ignore_ascii_case(id))
    }

    /// Adds a secret with the given value (a timeline step, or `serve`'s demo secret).
    pub fn add_secret(
        &mut self,
        tenant_id: &str,
        app_id: &str,
        spec: &SecretSpec,
        now: DateTime<Utc>,
    ) -> Option<PasswordCredential> {
        let key_id = self.ids.guid();
        let app = self.app_mut(tenant_id, app_id)?;
        let credential = PasswordCredential::new(spec, key_id, now);
        app.credentials.push(credential.clone());
        Some(credential)
    }

    /// Generates a new secret as `addPassword` does; returns its metadata and its text.
    pub fn generate_secret(
        &mut self,
        tenant_id: &str,
        app_id: &str,
        display_name: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<(PasswordCredential, String)> {
        // Portal secrets are 40 characters with a `~` after a 3-character prefix and a digit.
        let prefix = self.ids.string_from(SECRET_ALPHABET, 3);
        let digit = self.ids.string_from(b"0123456789", 1);
        let rest = self.ids.string_from(SECRET_ALPHABET, 34);
        let value = format!("{prefix}{digit}Q~{rest}");
        let spec = SecretSpec {
            value: value.clone(),
            display_name: display_name.into(),
            start,
            end,
        };
        self.add_secret(tenant_id, app_id, &spec, now)
            .map(|c| (c, value))
    }

    /// Adds a certificate to an app's `keyCredentials` (a `rotate-certificate` step); it works
    /// after the propagation delay, like a new secret.
    pub fn add_certificate(
        &mut self,
        tenant_id: &str,
        app_id: &str,
        spec: &CertificateSpec,
        now: DateTime<Utc>,
    ) -> Option<KeyCredential> {
        let key_id = self.ids.guid();
        let app = self.app_mut(tenant_id, app_id)?;
        let credential = KeyCredential::new(spec, key_id, now);
        app.key_credentials.push(credential.clone());
        Some(credential)
    }

    /// Removes a credential by `keyId`; false when there was none.
    pub fn remove_secret(&mut self, tenant_id: &str, app_id: &str, key_id: &str) -> bool {
        let Some(app) = self.app_mut(tenant_id, app_id) else {
            return false;
        };
        let before = app.credentials.len();
        app.credentials
            .retain(|c| !c.key_id.eq_ignore_ascii_case(key_id));
        app.credentials.len() != before
    }

    /// Moves a credential's `endDateTime` (a timeline "expire" step); false when not found.
    pub fn set_secret_end(
        &mut self,
        tenant_id: &str,
        app_id: &str,
        key_id: &str,
        end: DateTime<Utc>,
    ) -> bool {
        let Some(app) = self.app_mut(tenant_id, app_id) else {
            return false;
        };
        match app
            .credentials
            .iter_mut()
            .find(|c| c.key_id.eq_ignore_ascii_case(key_id))
        {
            Some(credential) => {
                credential.end = end;
                true
            }
            None => false,
        }
    }

    /// Deletes an app registration; its tokens keep working until `exp`, as Entra's do.
    pub fn delete_app(&mut self, tenant_id: &str, app_id: &str) -> bool {
        self.move_app(tenant_id, app_id, false)
    }

    /// Restores a deleted app with its secrets and permissions; false if none was deleted.
    pub fn restore_app(&mut self, tenant_id: &str, app_id: &str) -> bool {
        self.move_app(tenant_id, app_id, true)
    }

    /// Moves an app between the registrations and the deleted apps (`restore`: back again).
    fn move_app(&mut self, tenant_id: &str, app_id: &str, restore: bool) -> bool {
        let Some(tenant) = self.tenant_mut(tenant_id) else {
            return false;
        };
        let (from, to) = if restore {
            (&mut tenant.deleted_apps, &mut tenant.apps)
        } else {
            (&mut tenant.apps, &mut tenant.deleted_apps)
        };
        let Some(i) = from
            .iter()
            .position(|a| a.app_id.eq_ignore_ascii_case(app_id))
        else {
            return false;
        };
        to.push(from.remove(i));
        true
    }

    /// A fresh seeded GUID, for message ids and the like.
    pub fn next_guid(&mut self) -> String {
        self.ids.guid()
    }

    /// A fresh seeded Graph-style message id (`AAMk...`).
    pub fn next_message_id(&mut self) -> String {
        format!("AAMkAD{}", self.ids.string_from(URL_SAFE_ALPHABET, 46))
    }
}

impl Tenant {
    /// An app by `appId`.
    pub fn app(&self, app_id: &str) -> Option<&App> {
        self.apps
            .iter()
            .find(|a| a.app_id.eq_ignore_ascii_case(app_id))
    }
}

impl Mailbox {
    pub(super) fn matches(&self, user: &str) -> bool {
        self.id.eq_ignore_ascii_case(user) || self.upn.eq_ignore_ascii_case(user)
    }
}

const URL_SAFE_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn directory() -> Directory {
        let secret = SecretSpec {
            value: "old~secret".into(),
            display_name: "prod".into(),
            start: at("2024-02-14T11:30:00Z"),
            end: at("2025-02-14T11:30:00Z"),
        };
        Directory::new(&DirectoryConfig {
            seed: Seed(1),
            tenants: vec![TenantSpec {
                id: "11111111-1111-4111-8111-111111111111".into(),
                domain: "contoso.onmicrosoft.com".into(),
                settings: TenantSettings::default(),
                apps: vec![AppSpec {
                    app_id: "22222222-2222-4222-8222-222222222222".into(),
                    object_id: "33333333-3333-4333-8333-333333333333".into(),
                    display_name: "Mailman".into(),
                    secrets: vec![secret],
                    certificates: vec![],
                    roles: vec![],
                    audience: Default::default(),
                    redirect_uris: vec![],
                }],
                mailboxes: vec![],
                consents: vec![],
            }],
        })
    }

    const T: &str = "contoso.onmicrosoft.com";
    const A: &str = "22222222-2222-4222-8222-222222222222";

    #[test]
    fn secret_works_until_its_end_date_then_is_expired() {
        let d = directory();
        assert!(
            d.authenticate(T, A, Some("old~secret"), at("2025-02-14T11:29:59Z"))
                .is_ok()
        );
        let err = d.authenticate(T, A, Some("old~secret"), at("2025-02-14T11:30:00Z"));
        assert_eq!(err.unwrap_err(), CredentialError::ExpiredSecret);
        let wrong = d.authenticate(T, A, Some("nope"), at("2025-01-01T00:00:00Z"));
        assert_eq!(wrong.unwrap_err(), CredentialError::InvalidSecret);
        assert_eq!(
            d.authenticate(T, "x", None, at("2025-01-01T00:00:00Z"))
                .unwrap_err(),
            CredentialError::UnknownApp
        );
        assert_eq!(
            d.authenticate("x", A, None, at("2025-01-01T00:00:00Z"))
                .unwrap_err(),
            CredentialError::UnknownTenant
        );
        assert_eq!(
            d.authenticate(T, A, None, at("2025-01-01T00:00:00Z"))
                .unwrap_err(),
            CredentialError::MissingSecret
        );
    }

    #[test]
    fn new_secret_fails_during_propagation_then_works() {
        let mut d = directory();
        let now = at("2025-02-15T02:08:00Z");
        let (_, value) = d
            .generate_secret(T, A, "rotated", now, at("2026-02-15T00:00:00Z"), now)
            .unwrap();
        assert_eq!(value.len(), 40);
        let early = d.authenticate(T, A, Some(&value), now + chrono::TimeDelta::seconds(9));
        assert_eq!(early.unwrap_err(), CredentialError::ExpiredSecret);
        assert!(
            d.authenticate(T, A, Some(&value), now + chrono::TimeDelta::seconds(10))
                .is_ok()
        );
    }

    #[test]
    fn token_issued_before_expiry_stays_valid_until_its_own_exp() {
        let mut d = directory();
        let issued = at("2025-02-14T11:00:00Z");
        let token = d.issue_token(T, A, Resource::Exchange, issued).unwrap();
        let bearer = Some(token.value.as_str());
        let after_secret_expiry = at("2025-02-14T11:45:00Z");
        let role = Some("SMTP.SendAsApp");
        assert!(
            d.validate_token(bearer, Resource::Exchange, role, after_secret_expiry)
                .is_ok()
        );
        let at_exp = issued + chrono::TimeDelta::seconds(3599);
        assert!(matches!(
            d.validate_token(bearer, Resource::Exchange, role, at_exp),
            Err(TokenError::Expired(_))
        ));
        assert!(matches!(
            d.validate_token(bearer, Resource::Graph, None, after_secret_expiry),
            Err(TokenError::WrongAudience(_))
        ));
    }
}
