//! Delegated access for multi-tenant apps: service principals created by consent, users'
//! grants, authorization codes and rotating refresh tokens, and the user- and tenant-level
//! events that end them (revocation, withdrawn consent, a disabled app, inactivity, a new
//! MFA or Conditional Access requirement). Codes and refresh tokens are stored hashed, like
//! secrets; every value is derived from the seed and the grant, never from arrival order.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest, Sha256};

use super::directory::{Directory, Tenant, TenantSpec};
use super::token::{AccessToken, TokenClaims};
use super::{Resource, SignInAudience};
use crate::seed::{Seed, uuid_v4};

/// A service principal present in a tenant from the start, as an earlier consent created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentSpec {
    /// The app's client id.
    pub app_id: String,
    /// Whether an admin consented for every user of the tenant.
    pub admin: bool,
}

/// How long an authorization code lasts ("about 10 minutes", wire reference §8.3).
const CODE_LIFETIME: TimeDelta = TimeDelta::minutes(10);
/// A refresh token's inactivity limit (`MaxInactiveTime`, 90 days, §8.3).
pub const REFRESH_INACTIVITY: TimeDelta = TimeDelta::days(90);
/// An ID token's lifetime (1 h, §8.3).
const ID_TOKEN_LIFETIME: i64 = 3600;
/// The sign-in frequency of `enforce-sign-in-frequency`: one hour, the shortest a Conditional
/// Access policy offers, so a replay sees it lapse and a user who signs in again recover.
pub const SIGN_IN_FREQUENCY: TimeDelta = TimeDelta::hours(1);

/// `code_challenge_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeMethod {
    /// The verifier itself.
    Plain,
    /// BASE64URL(SHA-256(verifier)).
    S256,
}

/// A PKCE challenge sent to the authorization endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `code_challenge`.
    pub value: String,
    /// `code_challenge_method` (default `plain`, RFC 7636).
    pub method: ChallengeMethod,
}

impl Challenge {
    fn verifies(&self, verifier: &str) -> bool {
        match self.method {
            ChallengeMethod::Plain => self.value == verifier,
            ChallengeMethod::S256 => {
                URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == self.value
            }
        }
    }
}

/// `prompt` on the authorization request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// Sign in again.
    Login,
    /// No interaction at all: fails where consent is still needed.
    None,
    /// Show the consent page again.
    Consent,
    /// Let the user pick an account.
    SelectAccount,
}

/// An authorization request as the endpoint read it.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest<'a> {
    /// The `{tenant}` path segment: `common`, `organizations`, a tenant id or domain.
    pub authority: &'a str,
    /// `client_id`.
    pub client_id: &'a str,
    /// `redirect_uri`.
    pub redirect_uri: &'a str,
    /// `scope`, split.
    pub scopes: Vec<&'a str>,
    /// `login_hint`: the user who signs in (without one, the first user the authority admits).
    pub login_hint: Option<&'a str>,
    /// PKCE.
    pub challenge: Option<Challenge>,
    /// `nonce`, echoed in the ID token.
    pub nonce: Option<&'a str>,
    /// `prompt`.
    pub prompt: Option<Prompt>,
}

/// A successful sign-in: the code and whom it is for.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The authorization code.
    pub code: String,
    /// The user's tenant.
    pub tenant_id: String,
    /// The user's principal name.
    pub upn: String,
    /// `session_state`: one GUID per user's session.
    pub session_state: String,
}

impl std::fmt::Debug for Authorized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorized")
            .field("code", &"[redacted]")
            .field("tenant_id", &self.tenant_id)
            .field("upn", &self.upn)
            .finish_non_exhaustive()
    }
}

/// Why the authorization endpoint does not issue a code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizeRefusal {
    /// AADSTS90002, on the sign-in page.
    #[error("tenant not found")]
    UnknownTenant,
    /// AADSTS700016, on the sign-in page.
    #[error("application not found")]
    UnknownApp,
    /// AADSTS50194 (`common` or another tenant for a single-tenant app), on the sign-in page.
    #[error("application is not multi-tenant")]
    NotMultiTenant,
    /// AADSTS50011, on the sign-in page: never redirected.
    #[error("redirect uri is not registered")]
    RedirectUriMismatch,
    /// AADSTS7000112 in the user's tenant, on the sign-in page.
    #[error("application is disabled in the tenant")]
    AppDisabled,
    /// AADSTS50034: the account named does not exist, on the sign-in page.
    #[error("user account does not exist")]
    UnknownUser,
    /// AADSTS50057: the account is disabled, on the sign-in page.
    #[error("user account is disabled")]
    UserDisabled,
    /// AADSTS50020: the user belongs to another tenant than the authority names (redirected).
    #[error("user is not in the tenant")]
    UserNotInTenant,
    /// *Need admin approval*, left with "return to the application": redirected with
    /// `access_denied` and `error_subcode=cancel`.
    #[error("user consent is not allowed in the tenant")]
    ConsentBlocked,
    /// `prompt=none` where consent is still needed: `consent_required`, AADSTS65001.
    #[error("consent required")]
    ConsentRequired,
    /// A scope of a resource the mock does not know: `invalid_resource` (redirected).
    #[error("unknown resource {0}")]
    UnknownResource(String),
}

/// The grant a token request redeems.
#[derive(Clone, Copy)]
pub enum GrantKind<'a> {
    /// `authorization_code`.
    Code {
        /// `code`.
        code: &'a str,
        /// `redirect_uri`, which must equal the authorization request's.
        redirect_uri: &'a str,
        /// `code_verifier`.
        verifier: Option<&'a str>,
    },
    /// `refresh_token`.
    Refresh {
        /// `refresh_token`.
        token: &'a str,
    },
}

/// A delegated token request whose client has already authenticated.
#[derive(Clone)]
pub struct GrantRequest<'a> {
    /// The authenticated client.
    pub client_id: &'a str,
    /// The `{tenant}` path segment of the token request: a code is redeemed only where its
    /// user's tenant is admitted (AADSTS700005 otherwise).
    pub authority: &'a str,
    /// The grant.
    pub grant: GrantKind<'a>,
    /// `scope`, split (absent: the scopes of the sign-in).
    pub scopes: Option<Vec<&'a str>>,
    /// The scheme and host of the authority the client reached (`https://login.microsoftonline.com`
    /// in replays, the loopback URL under `serve`): an ID token's `iss` is
    /// `{login_base}/{tid}/v2.0`, so it matches the issuer of the discovery document.
    pub login_base: &'a str,
}

/// What a redeemed grant yields.
#[derive(Clone)]
pub struct DelegatedTokens {
    /// The access token.
    pub access: AccessToken,
    /// Its lifetime in seconds (60-90 minutes, drawn from the seed).
    pub expires_in: u64,
    /// The granted scopes on the token's resource, as the body's `scope`.
    pub scope: String,
    /// The new refresh token, when `offline_access` was granted.
    pub refresh_token: Option<String>,
    /// The ID token, when `openid` was asked for.
    pub id_token: Option<String>,
    /// The user's tenant.
    pub tenant_id: String,
    /// The user's object id.
    pub user_id: String,
}

impl std::fmt::Debug for DelegatedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelegatedTokens")
            .field("access", &self.access)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("tenant_id", &self.tenant_id)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// Why a delegated grant is refused (after the client authenticated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// No such code (or one of another client).
    #[error("authorization code is not valid")]
    InvalidCode,
    /// AADSTS54005.
    #[error("authorization code already redeemed")]
    CodeRedeemed,
    /// Past the code's ten minutes.
    #[error("authorization code expired")]
    CodeExpired,
    /// `redirect_uri` differs from the authorization request's.
    #[error("redirect uri differs from the authorization request's ({0})")]
    RedirectMismatch(String),
    /// AADSTS501481.
    #[error("code verifier does not match the challenge")]
    PkceMismatch,
    /// AADSTS700005: redeemed at a tenant other than the signed-in user's.
    #[error("authorization code is for another tenant")]
    CodeForOtherTenant,
    /// No such refresh token (or one of another client).
    #[error("refresh token is not valid")]
    InvalidRefreshToken,
    /// AADSTS700082: unused for 90 days; the token's issue instant.
    #[error("refresh token inactive since it was issued at {0}")]
    Inactive(DateTime<Utc>),
    /// AADSTS50173: the grant predates the user's `TokensValidFrom`.
    #[error("grant revoked")]
    Revoked {
        /// When the user signed in for this grant.
        issued_at: DateTime<Utc>,
        /// The user's `TokensValidFrom`.
        valid_from: DateTime<Utc>,
    },
    /// AADSTS700016: no service principal in the user's tenant (its domain).
    #[error("application not found in tenant {0}")]
    AppNotInTenant(String),
    /// AADSTS7000112.
    #[error("application disabled in the user's tenant")]
    AppDisabled,
    /// AADSTS65001.
    #[error("consent missing or withdrawn")]
    ConsentRequired,
    /// AADSTS50076, 50078, 50079 or 53003, on the token's resource.
    #[error("user interaction required")]
    Interaction(Requirement, Resource),
    /// AADSTS50057.
    #[error("user account is disabled")]
    UserDisabled,
    /// AADSTS70043: the sign-in is older than the sign-in frequency allows.
    #[error("sign-in of {issued_at} is older than the sign-in frequency")]
    SignInFrequency {
        /// When the user signed in for this grant.
        issued_at: DateTime<Utc>,
        /// The longest a sign-in lasts under the policy.
        max_lifetime: TimeDelta,
    },
    /// A scope of a resource the mock does not know.
    #[error("unknown resource {0}")]
    UnknownResource(String),
}

/// A requirement that a grant signed in before it does not meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Multi-factor authentication (AADSTS50076).
    Mfa,
    /// The MFA the user presented has expired (AADSTS50078).
    MfaExpired,
    /// The user must register for MFA (AADSTS50079).
    MfaEnrollment,
    /// A Conditional Access policy blocks issuance (AADSTS53003).
    ConditionalAccess,
}

/// A user-level event of a timeline or the control API.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum UserEvent {
    /// "Revoke sessions": the user's refresh tokens end (`TokensValidFrom` = now).
    RevokeSessions,
    /// An admin resets the password in the Entra admin center, which revokes refresh tokens
    /// (wire reference §8.3, the confidential-client column of D2's table).
    ResetPassword,
    /// The user's refresh tokens go unused past 90 days (their last use moved back).
    IdleRefreshTokens,
    /// MFA is required from now on.
    RequireMfa,
    /// A Conditional Access policy blocks token issuance from now on.
    BlockByConditionalAccess,
    /// The MFA the user presented expires: refresh refused until they sign in again.
    ExpireMfa,
    /// The user must register for MFA: refresh refused until they sign in again (and enrol).
    RequireMfaEnrollment,
    /// A Conditional Access sign-in frequency of one hour applies from now on: a refresh
    /// token whose sign-in is older is refused until the user signs in again.
    EnforceSignInFrequency,
    /// The account is disabled (`accountEnabled = false`): sign-in and refresh refused.
    DisableUser,
    /// The account is enabled again; its refresh tokens work again.
    EnableUser,
}

/// A tenant-level event for one app of a timeline or the control API.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum TenantEvent {
    /// Every user's consent and the admin's are withdrawn (the service principal stays).
    WithdrawConsent,
    /// The service principal is disabled (`accountEnabled = false`).
    DisableApp,
    /// The service principal is enabled again.
    EnableApp,
}

#[derive(Debug, Clone, Copy)]
struct Principal {
    enabled: bool,
    admin_consent: bool,
}

#[derive(Debug, Default)]
struct Grant {
    /// Delegated permissions the user consented to, per resource.
    scopes: BTreeMap<Resource, Vec<String>>,
    /// Whether the user consented themselves (admin consent is on the principal).
    consented: bool,
    /// Codes and tokens issued from this grant so far: the input of the next one's value.
    issued: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct UserState {
    valid_from: Option<DateTime<Utc>>,
    requirement: Option<(Requirement, DateTime<Utc>)>,
    /// Under a sign-in frequency policy (`SIGN_IN_FREQUENCY`).
    sign_in_frequency: bool,
    disabled: bool,
}

/// Tenant id, user object id, app id, each lowercase.
type GrantKey = (String, String, String);

#[derive(Debug)]
struct Code {
    key: GrantKey,
    redirect_uri: String,
    scopes: Vec<String>,
    challenge: Option<Challenge>,
    nonce: Option<String>,
    issued_at: DateTime<Utc>,
    redeemed: bool,
}

#[derive(Debug)]
struct Refresh {
    key: GrantKey,
    /// When the user signed in: revocation and new requirements compare with it.
    auth_time: DateTime<Utc>,
    issued_at: DateTime<Utc>,
    last_used: DateTime<Utc>,
    scopes: Vec<String>,
}

/// A user as tokens name them.
struct User {
    id: String,
    upn: String,
    display_name: String,
}

/// The signed-in chain a code or refresh token stands for.
struct Chain {
    key: GrantKey,
    auth_time: DateTime<Utc>,
    scopes: Vec<String>,
    nonce: Option<String>,
}

/// The delegated state of a directory.
#[derive(Debug)]
pub(crate) struct Delegated {
    seed: Seed,
    principals: BTreeMap<(String, String), Principal>,
    grants: BTreeMap<GrantKey, Grant>,
    users: BTreeMap<(String, String), UserState>,
    codes: BTreeMap<[u8; 32], Code>,
    refresh: BTreeMap<[u8; 32], Refresh>,
}

impl Delegated {
    pub(super) fn new(seed: Seed, tenants: &[TenantSpec]) -> Delegated {
        let principals = tenants
            .iter()
            .flat_map(|t| {
                t.consents.iter().map(|c| {
                    let principal = Principal {
                        enabled: true,
                        admin_consent: c.admin,
                    };
                    ((t.id.to_ascii_lowercase(), lower(&c.app_id)), principal)
                })
            })
            .collect();
        Delegated {
            seed,
            principals,
            grants: BTreeMap::new(),
            users: BTreeMap::new(),
            codes: BTreeMap::new(),
            refresh: BTreeMap::new(),
        }
    }

    /// An opaque value of `len` URL-safe characters for `key`'s `n`th issue of `kind`.
    fn opaque(&self, kind: &str, key: &GrantKey, n: u64, len: usize) -> String {
        let mut out = String::with_capacity(len + 4);
        out.push_str("1.AQ");
        let mut block = 0u64;
        while out.len() < len + 4 {
            let digest = self.seed.digest_for(
                kind,
                &[
                    key.0.as_bytes(),
                    key.1.as_bytes(),
                    key.2.as_bytes(),
                    &n.to_le_bytes(),
                    &block.to_le_bytes(),
                ],
            );
            out.push_str(&URL_SAFE_NO_PAD.encode(digest));
            block += 1;
        }
        out.truncate(len + 4);
        out
    }
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

fn hash(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// Whether a `{tenant}` path segment names no tenant but a kind of account.
pub fn is_broad(authority: &str) -> bool {
    authority.eq_ignore_ascii_case("common") || authority.eq_ignore_ascii_case("organizations")
}

/// A scope as the user consents to it: an OpenID Connect scope or a resource's permission.
enum ScopeItem<'a> {
    Oidc,
    Permission(Resource, &'a str),
    Unknown(&'a str),
}

fn classify(scope: &str) -> ScopeItem<'_> {
    let oidc = ["openid", "profile", "email", "offline_access"];
    if oidc.iter().any(|o| o.eq_ignore_ascii_case(scope)) {
        return ScopeItem::Oidc;
    }
    // A bare permission name is Graph's (as Entra reads `User.Read`).
    let Some((uri, permission)) = scope.rsplit_once('/').filter(|(u, _)| u.contains("://")) else {
        return ScopeItem::Permission(Resource::Graph, scope);
    };
    match Resource::from_audience(uri) {
        Some(resource) => ScopeItem::Permission(resource, permission),
        None => ScopeItem::Unknown(uri),
    }
}

/// The permissions a scope list asks of each resource (`.default`: what a mail app registers),
/// or the first resource URI the mock does not know.
fn permissions(scopes: &[&str]) -> Result<BTreeMap<Resource, Vec<String>>, String> {
    let mut out: BTreeMap<Resource, Vec<String>> = BTreeMap::new();
    for scope in scopes {
        match classify(scope) {
            ScopeItem::Oidc => {}
            ScopeItem::Unknown(uri) => return Err(uri.into()),
            ScopeItem::Permission(resource, permission) => {
                let entry = out.entry(resource).or_default();
                let names: Vec<&str> = if permission == ".default" {
                    resource.default_delegated().to_vec()
                } else {
                    vec![permission]
                };
                for name in names {
                    if !entry.iter().any(|p| p.eq_ignore_ascii_case(name)) {
                        entry.push(name.to_string());
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The resource of the first resource scope (the token is for it, §8.3).
fn first_resource(scopes: &[&str]) -> Option<Resource> {
    scopes.iter().find_map(|s| match classify(s) {
        ScopeItem::Permission(resource, _) => Some(resource),
        _ => None,
    })
}

fn has_scope(scopes: &[String], name: &str) -> bool {
    scopes.iter().any(|s| s.eq_ignore_ascii_case(name))
}

impl Directory {
    /// The tenant an app is registered in (its home tenant), by `appId`.
    pub fn home_tenant(&self, app_id: &str) -> Option<&Tenant> {
        self.tenants().iter().find(|t| t.app(app_id).is_some())
    }

    /// The tenant and the user who sign in: `login_hint`, else the first user the authority
    /// admits (the home tenant last for a broad authority).
    fn sign_in_user(
        &self,
        request: &AuthorizeRequest<'_>,
        home: &str,
    ) -> Result<(String, String, String), AuthorizeRefusal> {
        let broad = is_broad(request.authority);
        let named = self.tenant(request.authority).map(|t| t.id.clone());
        let admits = |t: &Tenant| {
            named
                .as_ref()
                .map_or(broad, |id| t.id.eq_ignore_ascii_case(id))
        };
        let found = match request.login_hint {
            Some(hint) => self
                .tenants()
                .iter()
                .find_map(|t| t.mailboxes.iter().find(|m| m.matches(hint)).map(|m| (t, m)))
                .ok_or(AuthorizeRefusal::UnknownUser)?,
            None => {
                let mut order: Vec<&Tenant> = self.tenants().iter().filter(|t| admits(t)).collect();
                order.sort_by_key(|t| t.id.eq_ignore_ascii_case(home));
                order
                    .into_iter()
                    .find_map(|t| t.mailboxes.first().map(|m| (t, m)))
                    .ok_or(AuthorizeRefusal::UnknownUser)?
            }
        };
        if !admits(found.0) {
            return Err(AuthorizeRefusal::UserNotInTenant);
        }
        Ok((found.0.id.clone(), found.1.id.clone(), found.1.upn.clone()))
    }

    /// The checks an authorization request meets before anything can be redirected: the
    /// authority, the app, its audience and the redirect URI. The app's home tenant id.
    pub fn check_client(&self, request: &AuthorizeRequest<'_>) -> Result<String, AuthorizeRefusal> {
        if !is_broad(request.authority) && self.tenant(request.authority).is_none() {
            return Err(AuthorizeRefusal::UnknownTenant);
        }
        let home = self
            .home_tenant(request.client_id)
            .ok_or(AuthorizeRefusal::UnknownApp)?;
        let app = home.app(request.client_id).expect("home_tenant found it");
        let foreign = self
            .tenant(request.authority)
            .is_some_and(|t| !t.id.eq_ignore_ascii_case(&home.id));
        if app.audience == SignInAudience::SingleTenant && (is_broad(request.authority) || foreign)
        {
            return Err(AuthorizeRefusal::NotMultiTenant);
        }
        if !app.redirect_uris.iter().any(|u| u == request.redirect_uri) {
            return Err(AuthorizeRefusal::RedirectUriMismatch);
        }
        Ok(home.id.clone())
    }

    /// Signs a user in and consents as the authorization endpoint does without a UI; the code.
    pub fn authorize(
        &mut self,
        request: &AuthorizeRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<Authorized, AuthorizeRefusal> {
        let home_id = self.check_client(request)?;
        let wanted = permissions(&request.scopes).map_err(AuthorizeRefusal::UnknownResource)?;
        let (tenant_id, user_id, upn) = self.sign_in_user(request, &home_id)?;
        let key = (lower(&tenant_id), lower(&user_id), lower(request.client_id));
        if self.user_state(&key).disabled {
            return Err(AuthorizeRefusal::UserDisabled);
        }
        self.consent(&key, &home_id, &wanted, request.prompt)?;
        let grant = self.delegated.grants.entry(key.clone()).or_default();
        grant.issued += 1;
        let n = grant.issued;
        let code = self.delegated.opaque("tenant.code", &key, n, 120);
        let record = Code {
            key: key.clone(),
            redirect_uri: request.redirect_uri.to_string(),
            scopes: request.scopes.iter().map(|s| s.to_string()).collect(),
            challenge: request.challenge.clone(),
            nonce: request.nonce.map(str::to_string),
            issued_at: now,
            redeemed: false,
        };
        self.delegated.codes.insert(hash(&code), record);
        let session = self
            .delegated
            .seed
            .digest_for("tenant.session", &[key.0.as_bytes(), key.1.as_bytes()]);
        let mut half = [0u8; 16];
        half.copy_from_slice(&session[..16]);
        Ok(Authorized {
            code,
            tenant_id,
            upn,
            session_state: uuid_v4(half),
        })
    }

    /// Consents for every user of the signed-in admin's tenant, as the admin-consent endpoint
    /// does without a UI (the user `login_hint` names, or the first the authority admits, acts
    /// as the admin): the service principal, created if absent, gets the admin's consent. The
    /// tenant id.
    pub fn admin_consent(
        &mut self,
        request: &AuthorizeRequest<'_>,
    ) -> Result<String, AuthorizeRefusal> {
        let home_id = self.check_client(request)?;
        permissions(&request.scopes).map_err(AuthorizeRefusal::UnknownResource)?;
        let (tenant_id, user_id, _) = self.sign_in_user(request, &home_id)?;
        let key = (lower(&tenant_id), lower(&user_id), lower(request.client_id));
        if self.user_state(&key).disabled {
            return Err(AuthorizeRefusal::UserDisabled);
        }
        // The home tenant needs no service principal: its users always count as consented.
        if key.0 == lower(&home_id) {
            return Ok(tenant_id);
        }
        let principal = self
            .delegated
            .principals
            .entry((key.0, key.2))
            .or_insert(Principal {
                enabled: true,
                admin_consent: false,
            });
        if !principal.enabled {
            return Err(AuthorizeRefusal::AppDisabled);
        }
        principal.admin_consent = true;
        Ok(tenant_id)
    }

    /// The consent step of a sign-in: the principal in the user's tenant and the user's grant.
    fn consent(
        &mut self,
        key: &GrantKey,
        home_id: &str,
        wanted: &BTreeMap<Resource, Vec<String>>,
        prompt: Option<Prompt>,
    ) -> Result<(), AuthorizeRefusal> {
        let principal_key = (key.0.clone(), key.2.clone());
        let home = key.0.eq_ignore_ascii_case(home_id);
        let principal = self.delegated.principals.get(&principal_key).copied();
        if principal.is_some_and(|p| !p.enabled) {
            return Err(AuthorizeRefusal::AppDisabled);
        }
        let admin = home || principal.is_some_and(|p| p.admin_consent);
        let grant = self.delegated.grants.get(key);
        let covered = grant.is_some_and(|g| {
            g.consented
                && wanted.iter().all(|(r, ps)| {
                    ps.iter()
                        .all(|p| g.scopes.get(r).is_some_and(|have| have.contains(p)))
                })
        });
        if !admin && !covered {
            if prompt == Some(Prompt::None) {
                return Err(AuthorizeRefusal::ConsentRequired);
            }
            let user_consent = self.tenant(&key.0).is_some_and(|t| t.settings.user_consent);
            if !user_consent {
                return Err(AuthorizeRefusal::ConsentBlocked);
            }
        }
        if !home {
            self.delegated
                .principals
                .entry(principal_key)
                .or_insert(Principal {
                    enabled: true,
                    admin_consent: false,
                });
        }
        let grant = self.delegated.grants.entry(key.clone()).or_default();
        grant.consented |= !admin || covered;
        for (resource, names) in wanted {
            let have = grant.scopes.entry(*resource).or_default();
            for name in names {
                if !have.contains(name) {
                    have.push(name.clone());
                }
            }
        }
        Ok(())
    }

    /// Redeems a code or a refresh token for `request.client_id`, which has authenticated.
    pub fn redeem(
        &mut self,
        request: &GrantRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<DelegatedTokens, GrantError> {
        let chain = match request.grant {
            GrantKind::Code {
                code,
                redirect_uri,
                verifier,
            } => {
                let chain =
                    self.code_chain(request.client_id, code, redirect_uri, verifier, now)?;
                self.code_tenant_admitted(request.authority, &chain)?;
                chain
            }
            GrantKind::Refresh { token } => self.refresh_chain(request.client_id, token, now)?,
        };
        let asked: Vec<&str> = match &request.scopes {
            Some(scopes) => scopes.clone(),
            None => chain.scopes.iter().map(String::as_str).collect(),
        };
        let resource = first_resource(&asked)
            .or_else(|| {
                first_resource(&chain.scopes.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .unwrap_or(Resource::Graph);
        permissions(&asked).map_err(GrantError::UnknownResource)?;
        self.standing(&chain, resource)?;
        self.user_standing(&chain, now)?;
        match request.grant {
            GrantKind::Code { code, .. } => {
                if let Some(record) = self.delegated.codes.get_mut(&hash(code)) {
                    record.redeemed = true;
                }
            }
            GrantKind::Refresh { token } => {
                if let Some(record) = self.delegated.refresh.get_mut(&hash(token)) {
                    record.last_used = now;
                }
            }
        }
        Ok(self.issue_delegated(&chain, &asked, resource, request.login_base, now))
    }

    /// The user a code or a refresh token was issued to, whatever its standing, for the
    /// journal: a refresh refused for an expired secret is still that user's.
    pub fn grant_holder(&self, grant: GrantKind<'_>) -> Option<String> {
        let key = match grant {
            GrantKind::Code { code, .. } => &self.delegated.codes.get(&hash(code))?.key,
            GrantKind::Refresh { token } => &self.delegated.refresh.get(&hash(token))?.key,
        };
        let tenant = self.tenant(&key.0)?;
        let user = tenant
            .mailboxes
            .iter()
            .find(|m| m.id.eq_ignore_ascii_case(&key.1))?;
        Some(user.upn.clone())
    }

    fn code_chain(
        &self,
        client_id: &str,
        code: &str,
        redirect_uri: &str,
        verifier: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Chain, GrantError> {
        let record = self
            .delegated
            .codes
            .get(&hash(code))
            .filter(|c| c.key.2 == lower(client_id))
            .ok_or(GrantError::InvalidCode)?;
        if record.redeemed {
            return Err(GrantError::CodeRedeemed);
        }
        if now >= record.issued_at + CODE_LIFETIME {
            return Err(GrantError::CodeExpired);
        }
        if record.redirect_uri != redirect_uri {
            return Err(GrantError::RedirectMismatch(record.redirect_uri.clone()));
        }
        if let Some(challenge) = &record.challenge
            && !verifier.is_some_and(|v| challenge.verifies(v))
        {
            return Err(GrantError::PkceMismatch);
        }
        Ok(Chain {
            key: record.key.clone(),
            auth_time: record.issued_at,
            scopes: record.scopes.clone(),
            nonce: record.nonce.clone(),
        })
    }

    /// A code is redeemed at a broad authority or at its user's own tenant (AADSTS700005).
    fn code_tenant_admitted(&self, authority: &str, chain: &Chain) -> Result<(), GrantError> {
        let named = self.tenant(authority).map(|t| lower(&t.id));
        match named {
            Some(id) if id != chain.key.0 => Err(GrantError::CodeForOtherTenant),
            _ => Ok(()),
        }
    }

    /// The user's state (default: enabled, no requirement).
    fn user_state(&self, key: &GrantKey) -> UserState {
        self.delegated
            .users
            .get(&(key.0.clone(), key.1.clone()))
            .copied()
            .unwrap_or_default()
    }

    /// After the grant's standing: a sign-in older than the sign-in frequency allows.
    fn user_standing(&self, chain: &Chain, now: DateTime<Utc>) -> Result<(), GrantError> {
        let user = self.user_state(&chain.key);
        if user.sign_in_frequency && now - chain.auth_time > SIGN_IN_FREQUENCY {
            return Err(GrantError::SignInFrequency {
                issued_at: chain.auth_time,
                max_lifetime: SIGN_IN_FREQUENCY,
            });
        }
        Ok(())
    }

    fn refresh_chain(
        &self,
        client_id: &str,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Chain, GrantError> {
        let record = self
            .delegated
            .refresh
            .get(&hash(token))
            .filter(|r| r.key.2 == lower(client_id))
            .ok_or(GrantError::InvalidRefreshToken)?;
        if now >= record.last_used + REFRESH_INACTIVITY {
            return Err(GrantError::Inactive(record.issued_at));
        }
        Ok(Chain {
            key: record.key.clone(),
            auth_time: record.auth_time,
            scopes: record.scopes.clone(),
            nonce: None,
        })
    }

    /// The tenant-, user- and consent-level checks a grant meets at each redemption.
    fn standing(&self, chain: &Chain, resource: Resource) -> Result<(), GrantError> {
        let (tenant_id, user_id, app_id) = &chain.key;
        let home = self
            .home_tenant(app_id)
            .is_some_and(|t| t.id.eq_ignore_ascii_case(tenant_id));
        let principal = self
            .delegated
            .principals
            .get(&(tenant_id.clone(), app_id.clone()));
        if !home {
            let domain = self
                .tenant(tenant_id)
                .map_or(tenant_id.clone(), |t| t.domain.clone());
            let principal = principal.ok_or(GrantError::AppNotInTenant(domain))?;
            if !principal.enabled {
                return Err(GrantError::AppDisabled);
            }
        }
        let user = self
            .delegated
            .users
            .get(&(tenant_id.clone(), user_id.clone()))
            .copied()
            .unwrap_or_default();
        // An account's state comes before its grants: a disabled user's tokens all stop.
        if user.disabled {
            return Err(GrantError::UserDisabled);
        }
        if let Some(valid_from) = user.valid_from
            && chain.auth_time < valid_from
        {
            return Err(GrantError::Revoked {
                issued_at: chain.auth_time,
                valid_from,
            });
        }
        let admin = home || principal.is_some_and(|p| p.admin_consent);
        let grant = self.delegated.grants.get(&chain.key);
        // Without an admin's consent a user gets tokens only for a resource they consented to
        // (§8.3: the scopes must be those consented or a subset); a grant that named no
        // resource takes the default ones.
        let consented = grant.is_some_and(|g| {
            g.consented && (g.scopes.is_empty() || g.scopes.contains_key(&resource))
        });
        if !admin && !consented {
            return Err(GrantError::ConsentRequired);
        }
        match user.requirement {
            // Signing in again satisfies MFA; a Conditional Access block stands for every
            // sign-in until the policy changes, so a user who reconnects is still refused.
            Some((Requirement::ConditionalAccess, _)) => Err(GrantError::Interaction(
                Requirement::ConditionalAccess,
                resource,
            )),
            Some((requirement, since)) if chain.auth_time < since => {
                Err(GrantError::Interaction(requirement, resource))
            }
            _ => Ok(()),
        }
    }

    fn issue_delegated(
        &mut self,
        chain: &Chain,
        asked: &[&str],
        resource: Resource,
        login_base: &str,
        now: DateTime<Utc>,
    ) -> DelegatedTokens {
        let key = chain.key.clone();
        let grant = self.delegated.grants.entry(key.clone()).or_default();
        grant.issued += 1;
        let n = grant.issued;
        let mut granted = grant.scopes.get(&resource).cloned().unwrap_or_default();
        if granted.is_empty() {
            granted = resource
                .default_delegated()
                .iter()
                .map(|s| s.to_string())
                .collect();
        }
        granted.sort();
        let scp = granted.join(" ");
        let lifetime = self.delegated_lifetime(&key, n);
        let (tenant_id, user) = self.user_of(&key);
        let claims = TokenClaims {
            aud: resource.audience().to_string(),
            iss: format!("https://sts.windows.net/{tenant_id}/"),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: now.timestamp() + lifetime as i64,
            appid: key.2.clone(),
            idtyp: "user".into(),
            oid: user.id.clone(),
            roles: Vec::new(),
            sub: self.pairwise(&key),
            tid: tenant_id.clone(),
            uti: self.delegated.opaque("tenant.uti", &key, n, 18)[4..].to_string(),
            ver: "1.0".into(),
            scp: Some(scp.clone()),
            upn: Some(user.upn.clone()),
        };
        let access = self.sign(claims);
        let offline = has_scope(&chain.scopes, "offline_access");
        let refresh_token = offline.then(|| self.new_refresh(chain, n, now));
        let openid = asked.iter().any(|s| s.eq_ignore_ascii_case("openid"));
        let id_token = openid.then(|| self.id_token(chain, &user, login_base, now));
        let mut scope: Vec<String> = granted
            .iter()
            .map(|p| format!("{}/{p}", resource.audience()))
            .collect();
        scope.extend(
            ["openid", "profile", "email"]
                .iter()
                .filter(|o| asked.iter().any(|s| s.eq_ignore_ascii_case(o)))
                .map(|o| o.to_string()),
        );
        DelegatedTokens {
            access,
            expires_in: lifetime,
            scope: scope.join(" "),
            refresh_token,
            id_token,
            tenant_id,
            user_id: user.id,
        }
    }

    fn new_refresh(&mut self, chain: &Chain, n: u64, now: DateTime<Utc>) -> String {
        let value = self.delegated.opaque("tenant.refresh", &chain.key, n, 200);
        let record = Refresh {
            key: chain.key.clone(),
            auth_time: chain.auth_time,
            issued_at: now,
            last_used: now,
            scopes: chain.scopes.clone(),
        };
        self.delegated.refresh.insert(hash(&value), record);
        value
    }

    /// An access token's lifetime: 60 to 90 minutes, from the seed and the grant (E3).
    fn delegated_lifetime(&self, key: &GrantKey, n: u64) -> u64 {
        let digest = self.delegated.seed.digest_for(
            "tenant.delegated-lifetime",
            &[
                key.0.as_bytes(),
                key.1.as_bytes(),
                key.2.as_bytes(),
                &n.to_le_bytes(),
            ],
        );
        let draw = u64::from_le_bytes(digest[..8].try_into().expect("8 of 32 bytes"));
        3600 + draw % 1801
    }

    /// `sub`: pairwise per user and app.
    fn pairwise(&self, key: &GrantKey) -> String {
        let digest = self.delegated.seed.digest_for(
            "tenant.pairwise-sub",
            &[key.0.as_bytes(), key.1.as_bytes(), key.2.as_bytes()],
        );
        URL_SAFE_NO_PAD.encode(&digest[..32])[..43].to_string()
    }

    /// The user's tenant id and the user, as the directory spells them.
    fn user_of(&self, key: &GrantKey) -> (String, User) {
        let tenant = self.tenant(&key.0).expect("a grant's tenant stays");
        let user = tenant
            .mailboxes
            .iter()
            .find(|m| m.id.eq_ignore_ascii_case(&key.1))
            .expect("a grant's user stays");
        let user = User {
            id: user.id.clone(),
            upn: user.upn.clone(),
            display_name: user.display_name.clone(),
        };
        (tenant.id.clone(), user)
    }

    fn id_token(&self, chain: &Chain, user: &User, base: &str, now: DateTime<Utc>) -> String {
        super::signing::id_token_key().sign(&self.id_claims(chain, user, base, now))
    }

    /// The ID token of the hybrid flow (`response_type=code id_token`) for a code just issued:
    /// the token endpoint's claims with the request's `nonce` and `c_hash` (the left half of
    /// SHA-256 of the code, OpenID Connect Core 3.3.2.11), which front-channel ID tokens carry.
    pub fn hybrid_id_token(&self, code: &str, login_base: &str, now: DateTime<Utc>) -> String {
        let record = self
            .delegated
            .codes
            .get(&hash(code))
            .expect("the code was issued just now");
        let chain = Chain {
            key: record.key.clone(),
            auth_time: record.issued_at,
            scopes: record.scopes.clone(),
            nonce: record.nonce.clone(),
        };
        let (_, user) = self.user_of(&chain.key);
        let mut claims = self.id_claims(&chain, &user, login_base, now);
        let digest = Sha256::digest(code.as_bytes());
        claims["c_hash"] = serde_json::Value::String(URL_SAFE_NO_PAD.encode(&digest[..16]));
        super::signing::id_token_key().sign(&claims)
    }

    fn id_claims(
        &self,
        chain: &Chain,
        user: &User,
        base: &str,
        now: DateTime<Utc>,
    ) -> serde_json::Value {
        let (tenant_id, _, app_id) = &chain.key;
        let tenant_id = self
            .tenant(tenant_id)
            .map_or(tenant_id.clone(), |t| t.id.clone());
        let app_id = self
            .home_tenant(app_id)
            .and_then(|t| t.app(app_id))
            .map_or(app_id.clone(), |a| a.app_id.clone());
        let mut claims = serde_json::json!({
            "aud": app_id,
            "iss": format!("{base}/{tenant_id}/v2.0"),
            "iat": now.timestamp(),
            "nbf": now.timestamp(),
            "exp": now.timestamp() + ID_TOKEN_LIFETIME,
            "name": user.display_name,
            "oid": user.id,
            "preferred_username": user.upn,
            "sub": self.pairwise(&chain.key),
            "tid": tenant_id,
            "ver": "2.0",
        });
        if let Some(nonce) = &chain.nonce {
            claims["nonce"] = serde_json::Value::String(nonce.clone());
        }
        claims
    }

    /// A user-level event at `now`; false when the tenant or the user is unknown.
    pub fn user_event(
        &mut self,
        tenant: &str,
        user: &str,
        event: UserEvent,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(tenant) = self.tenant(tenant) else {
            return false;
        };
        let Some(mailbox) = tenant.mailboxes.iter().find(|m| m.matches(user)) else {
            return false;
        };
        let key = (lower(&tenant.id), lower(&mailbox.id));
        let state = self.delegated.users.entry(key.clone()).or_default();
        match event {
            UserEvent::RevokeSessions | UserEvent::ResetPassword => state.valid_from = Some(now),
            UserEvent::RequireMfa => state.requirement = Some((Requirement::Mfa, now)),
            UserEvent::ExpireMfa => state.requirement = Some((Requirement::MfaExpired, now)),
            UserEvent::RequireMfaEnrollment => {
                state.requirement = Some((Requirement::MfaEnrollment, now))
            }
            UserEvent::EnforceSignInFrequency => state.sign_in_frequency = true,
            UserEvent::DisableUser => state.disabled = true,
            UserEvent::EnableUser => state.disabled = false,
            UserEvent::BlockByConditionalAccess => {
                state.requirement = Some((Requirement::ConditionalAccess, now))
            }
            UserEvent::IdleRefreshTokens => {
                for record in self.delegated.refresh.values_mut() {
                    if (&record.key.0, &record.key.1) == (&key.0, &key.1) {
                        record.last_used = record.last_used.min(now - REFRESH_INACTIVITY);
                    }
                }
            }
        }
        true
    }

    /// Withdraws consent to `app_id` in a tenant: every user's grant and the admin's consent
    /// (the service principal stays); false when the tenant is unknown.
    pub fn withdraw_consent(&mut self, tenant: &str, app_id: &str) -> bool {
        let Some(tenant_id) = self.tenant(tenant).map(|t| lower(&t.id)) else {
            return false;
        };
        let app = lower(app_id);
        if let Some(principal) = self
            .delegated
            .principals
            .get_mut(&(tenant_id.clone(), app.clone()))
        {
            principal.admin_consent = false;
        }
        for ((t, _, a), grant) in self.delegated.grants.iter_mut() {
            if *t == tenant_id && *a == app {
                grant.consented = false;
                grant.scopes.clear();
            }
        }
        true
    }

    /// A tenant-level event for `app_id`; false when the tenant (or, to disable or enable,
    /// its service principal) is unknown.
    pub fn tenant_event(&mut self, tenant: &str, app_id: &str, event: TenantEvent) -> bool {
        match event {
            TenantEvent::WithdrawConsent => self.withdraw_consent(tenant, app_id),
            TenantEvent::DisableApp => self.set_app_enabled(tenant, app_id, false),
            TenantEvent::EnableApp => self.set_app_enabled(tenant, app_id, true),
        }
    }

    /// The tenant id of the user named `upn` (or object id), in any tenant.
    pub fn user_tenant(&self, user: &str) -> Option<&str> {
        self.tenants()
            .iter()
            .find(|t| t.mailboxes.iter().any(|m| m.matches(user)))
            .map(|t| t.id.as_str())
    }

    /// Disables or enables `app_id`'s service principal in a tenant (`accountEnabled`); false
    /// when the tenant has none.
    pub fn set_app_enabled(&mut self, tenant: &str, app_id: &str, enabled: bool) -> bool {
        let Some(tenant_id) = self.tenant(tenant).map(|t| lower(&t.id)) else {
            return false;
        };
        match self
            .delegated
            .principals
            .get_mut(&(tenant_id, lower(app_id)))
        {
            Some(principal) => {
                principal.enabled = enabled;
                true
            }
            None => false,
        }
    }

    /// Deletes `app_id`'s service principal in a tenant (grants go with it); false when none.
    pub fn remove_service_principal(&mut self, tenant: &str, app_id: &str) -> bool {
        let Some(tenant_id) = self.tenant(tenant).map(|t| lower(&t.id)) else {
            return false;
        };
        let app = lower(app_id);
        self.delegated
            .grants
            .retain(|(t, _, a), _| !(*t == tenant_id && *a == app));
        self.delegated
            .principals
            .remove(&(tenant_id, app))
            .is_some()
    }

    /// Whether `app_id` has a service principal in the tenant, and whether it is enabled.
    pub fn service_principal(&self, tenant: &str, app_id: &str) -> Option<bool> {
        let tenant_id = lower(&self.tenant(tenant)?.id);
        self.delegated
            .principals
            .get(&(tenant_id, lower(app_id)))
            .map(|p| p.enabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_challenge_verifies_only_its_verifier() {
        let verifier = "dBjftJeZ4CVP-mJ92K9HtoV0q5MjqWDNAiPMDJ-WMn6M";
        let challenge = Challenge {
            value: "4_t2uF2JYJPsYovik24ueJhEmDk83N24FqB2AMxSEFM".into(),
            method: ChallengeMethod::S256,
        };
        assert!(challenge.verifies(verifier));
        assert!(!challenge.verifies("dBjftJeZ4CVP-mJ92K9HtoV0q5MjqWDNAiPMDJ-WMn6N"));
        let plain = Challenge {
            value: verifier.into(),
            method: ChallengeMethod::Plain,
        };
        assert!(plain.verifies(verifier));
    }

    #[test]
    fn the_first_resource_scope_decides_the_token_and_default_expands() {
        let scopes = [
            "openid",
            "offline_access",
            "https://outlook.office.com/SMTP.Send",
        ];
        assert_eq!(first_resource(&scopes), Some(Resource::Exchange));
        assert_eq!(first_resource(&["User.Read"]), Some(Resource::Graph));
        assert_eq!(first_resource(&["openid"]), None);
        let asked = permissions(&["https://graph.microsoft.com/.default", "Mail.Send"]).unwrap();
        assert_eq!(
            asked[&Resource::Graph],
            ["Mail.Read", "Mail.Send", "User.Read"]
        );
        assert_eq!(
            permissions(&["https://contoso.example/Read"]).unwrap_err(),
            "https://contoso.example"
        );
    }

    #[test]
    fn opaque_values_depend_on_the_grant_and_the_count_not_on_order() {
        let delegated = Delegated::new(Seed(1), &[]);
        let key: GrantKey = ("t".into(), "u".into(), "a".into());
        let first = delegated.opaque("tenant.code", &key, 1, 120);
        assert_eq!(first.len(), 124);
        assert_eq!(first, delegated.opaque("tenant.code", &key, 1, 120));
        assert_ne!(first, delegated.opaque("tenant.code", &key, 2, 120));
        assert_ne!(first, delegated.opaque("tenant.refresh", &key, 1, 120));
    }
}
