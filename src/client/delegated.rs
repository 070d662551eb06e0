//! Delegated tokens of a multi-tenant app: a user connects a mailbox through the
//! authorization-code flow (PKCE, `state`, `offline_access`), and the client then redeems that
//! user's refresh token with the app's secret for each access token, one request in flight per
//! user, rotated refresh tokens kept in the connection store.
//!
//! Failures are judged by whose they are. The app's own (`invalid_client`, a throttled or
//! unavailable token endpoint) put ONE hold on the whole app: no user's refresh goes out while
//! it runs, one probe goes out per interval (1 s doubling to the cap, at least `Retry-After`,
//! jittered), a new secret value ends it at once, and no connection is marked broken. A
//! user's (`invalid_grant`, `interaction_required`, `consent_required`, the app disabled in the
//! user's tenant) marks only that connection as needing the user, notifies the product, and
//! stops that user's refreshes until the user connects again. What this module does not do:
//! send or sync (`client::fleet`), or decide what the product shows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponse, BasicErrorResponseType};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse as _,
    TokenUrl,
};
use tokio::time::Instant;

use super::alert::{AlertEvent, Alerter, Severity};
use super::classify::{self, CredentialProblem, Failure, Seen};
use super::connection::{Connection, Status};
use super::outbox::Outbox;
use super::secret::{Secret, SecretSource};
use super::token::{
    HoldStore as _, OAuthHttp, StoredHold, Token, TokenFuture, TokenSource, fingerprint,
};
use super::transport::HttpTransport;
use crate::seed::SeedRng;
use crate::time::{ClockExt as _, SharedClock};

/// Graph: send as the user.
pub const GRAPH_MAIL_SEND: &str = "https://graph.microsoft.com/Mail.Send";
/// Graph: read the user's inbox.
pub const GRAPH_MAIL_READ: &str = "https://graph.microsoft.com/Mail.Read";
/// SMTP AUTH as the user.
pub const SMTP_SEND: &str = "https://outlook.office.com/SMTP.Send";
/// What a user consents to when connecting: both resources, and a refresh token (the ID
/// token's claims are not asked for: the user is known from the connect).
pub const CONNECT_SCOPES: [&str; 5] = [
    "openid",
    "offline_access",
    GRAPH_MAIL_SEND,
    GRAPH_MAIL_READ,
    SMTP_SEND,
];
/// The alert kind of a connection that needs its user (a notification, never a page).
pub const NEEDS_USER: &str = "connection-needs-user";

/// Whom an `invalid_client` refusal is blamed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The app's credential: hold the app, keep every connection (it is the same for all).
    App,
    /// The user whose refresh met it: that connection needs the user.
    User,
}

/// What a connection that needs its user keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNeedsUser {
    /// The refresh token and the user's queued mail wait for the reconnect.
    Hold,
    /// Both are dropped ("disconnected"): the mail is lost.
    Forget,
}

/// The multi-tenant app's delegated settings.
#[derive(Debug, Clone)]
pub struct DelegatedConfig {
    /// The app's client id.
    pub client_id: String,
    /// `https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize`.
    pub authorize_url: String,
    /// `https://login.microsoftonline.com/organizations/oauth2/v2.0/token`.
    pub token_url: String,
    /// The redirect URI registered for the app.
    pub redirect_uri: String,
    /// Where the app's secret is read (a file is re-read, so a rotation needs no restart).
    pub secret: SecretSource,
    /// Refresh an access token this long before it expires.
    pub refresh_ahead: Duration,
    /// Give up on a token request after this long.
    pub request_timeout: Duration,
    /// The longest hold of the app after its own failure; `None`: no hold, every user's
    /// refresh goes out whatever happened to the others.
    pub app_hold_cap: Option<Duration>,
    /// Whether a throttled endpoint's `Retry-After` lengthens the app's hold.
    pub read_retry_after: bool,
    /// Whom `invalid_client` is blamed on.
    pub client_refusal: Blame,
    /// What a connection needing its user keeps.
    pub on_needs_user: OnNeedsUser,
    /// Attempts of one refresh before its failure stands (1: no retry), `refresh_every` apart.
    pub refresh_attempts: u32,
    /// The wait between those attempts.
    pub refresh_every: Duration,
}

impl DelegatedConfig {
    /// Settings with the defaults: a hold of the app capped at 5 min, `invalid_client`
    /// blamed on the app, held mail kept, one attempt per refresh.
    pub fn new(
        client_id: impl Into<String>,
        authorize_url: impl Into<String>,
        token_url: impl Into<String>,
        redirect_uri: impl Into<String>,
        secret: SecretSource,
    ) -> DelegatedConfig {
        DelegatedConfig {
            client_id: client_id.into(),
            authorize_url: authorize_url.into(),
            token_url: token_url.into(),
            redirect_uri: redirect_uri.into(),
            secret,
            refresh_ahead: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
            app_hold_cap: Some(Duration::from_secs(300)),
            read_retry_after: true,
            client_refusal: Blame::App,
            on_needs_user: OnNeedsUser::Hold,
            refresh_attempts: 1,
            refresh_every: Duration::from_secs(1),
        }
    }
}

/// A connect that did not end with a kept connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to connect {upn}: {reason}")]
pub struct ConnectError {
    /// The user.
    pub upn: String,
    /// Why (never a code or a token).
    pub reason: String,
}

/// A failed refresh, by whose it is.
enum Refusal {
    /// The app's (its credential, or the token endpoint): hold the app.
    App(Failure),
    /// The user's, with the reason the product shows (the AADSTS code).
    User(String),
}

/// How often a connection refused for its tenant (the app disabled or removed there) is tried
/// again: the tenant's admin can mend it without the user, so no reconnect is asked for.
const TENANT_RECHECK: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Whether a needs-user reason is the tenant's doing (`unauthorized_client` AADSTS7000112,
/// the app disabled there; AADSTS700016, the app removed there), which its admin may undo.
fn tenant_level(reason: &str) -> bool {
    matches!(reason, "AADSTS7000112" | "AADSTS700016")
}

/// The app's hold after its own failure.
struct AppHold {
    failure: Failure,
    secret: Option<Secret>,
    until: Instant,
    refusals: u32,
    at: Instant,
    /// The end of the endpoint's `Retry-After`, which holds for any secret.
    retry_until: Option<Instant>,
}

/// What every user's tokens share: the app's settings, its hold, the connection store and the
/// product's notifications.
pub struct AppTokens {
    config: DelegatedConfig,
    clock: SharedClock,
    http: Arc<dyn HttpTransport>,
    store: Arc<Outbox>,
    alerter: Arc<Alerter>,
    hold: Mutex<Option<AppHold>>,
    /// One probe for the whole app while it is held.
    probe: tokio::sync::Mutex<()>,
    jitter: Mutex<Option<SeedRng>>,
    requests: AtomicU64,
    /// Whether a kept hold was looked for in the database.
    resumed: std::sync::atomic::AtomicBool,
    /// The authorize, token and redirect URLs, parsed once.
    endpoints: std::sync::OnceLock<Result<Endpoints, oauth2::url::ParseError>>,
}

type Endpoints = (AuthUrl, TokenUrl, RedirectUrl);

impl std::fmt::Debug for AppTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppTokens")
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

impl AppTokens {
    /// The app's delegated tokens over `http`, keeping connections in `store` and notifying
    /// the product through `alerter`.
    pub fn new(
        config: DelegatedConfig,
        clock: SharedClock,
        http: Arc<dyn HttpTransport>,
        store: Arc<Outbox>,
        alerter: Arc<Alerter>,
    ) -> AppTokens {
        AppTokens {
            config,
            clock,
            http,
            store,
            alerter,
            hold: Mutex::new(None),
            probe: tokio::sync::Mutex::new(()),
            jitter: Mutex::new(None),
            requests: AtomicU64::new(0),
            resumed: std::sync::atomic::AtomicBool::new(false),
            endpoints: std::sync::OnceLock::new(),
        }
    }

    /// Spreads each hold over its last quarter with `rng`.
    pub fn with_jitter(self, rng: SeedRng) -> AppTokens {
        *self.jitter.lock().unwrap_or_else(|p| p.into_inner()) = Some(rng);
        self
    }

    /// The settings.
    pub fn config(&self) -> &DelegatedConfig {
        &self.config
    }

    /// Token requests (refreshes and code redemptions) sent so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Whether the app is held now (for this secret value).
    pub fn held_now(&self) -> bool {
        let secret = self.config.secret.current().ok();
        self.held(secret.as_ref()).is_some()
    }

    /// The oauth2 client with `secret` (read by the caller, once per request: a file read is
    /// not free at a refresh per user per hour), on endpoints parsed once per process.
    fn oauth(&self, secret: Option<&Secret>) -> Result<OAuthClient, Failure> {
        let secret = match secret {
            Some(secret) => secret.clone(),
            None => self
                .config
                .secret
                .current()
                .map_err(|e| Failure::Transient {
                    reason: e.to_string(),
                    retry_after: None,
                })?,
        };
        let parsed = self.endpoints.get_or_init(|| {
            Ok((
                AuthUrl::new(self.config.authorize_url.clone())?,
                TokenUrl::new(self.config.token_url.clone())?,
                RedirectUrl::new(self.config.redirect_uri.clone())?,
            ))
        });
        let (auth, token, redirect) = parsed.as_ref().map_err(|e| Failure::Permanent {
            reason: format!("bad delegated URL: {e}"),
        })?;
        Ok(
            BasicClient::new(ClientId::new(self.config.client_id.clone()))
                .set_client_secret(ClientSecret::new(secret.expose().to_string()))
                .set_auth_uri(auth.clone())
                .set_token_uri(token.clone())
                .set_redirect_uri(redirect.clone()),
        )
    }

    fn transport(&self) -> OAuthHttp {
        OAuthHttp::new(
            self.clock.clone(),
            self.http.clone(),
            self.config.request_timeout,
        )
    }
}

type OAuthClient = BasicClient<
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

/// A kept connection: the user's first refresh token and a Graph access token.
pub struct Connected {
    /// The user's refresh token.
    pub refresh_token: String,
    /// The access token the code was redeemed for (Graph's: the first resource asked).
    pub token: Option<Token>,
}

impl std::fmt::Debug for Connected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connected { .. }")
    }
}

impl AppTokens {
    /// Runs the authorization-code flow for `upn`: the request (PKCE S256, a `state`, the
    /// scopes with `offline_access`, `login_hint`) opened with `open`, which returns where the
    /// browser was redirected; the `state` checked, the code redeemed with the verifier and
    /// the secret, and the connection kept in the store.
    pub async fn connect<F, Fut>(
        &self,
        upn: &str,
        tenant_id: &str,
        rng: &mut SeedRng,
        open: F,
    ) -> Result<Connected, ConnectError>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<String, String>>,
    {
        let refused = |reason: String| ConnectError {
            upn: upn.to_string(),
            reason,
        };
        let client = self.oauth(None).map_err(|f| refused(format!("{f:?}")))?;
        let verifier = PkceCodeVerifier::new(format!("{}{}", rng.guid(), rng.guid()));
        let state = rng.guid();
        let mut request = client
            .authorize_url(|| CsrfToken::new(state.clone()))
            .set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(&verifier))
            .add_extra_param("login_hint", upn)
            .add_extra_param("response_mode", "query");
        for scope in CONNECT_SCOPES {
            request = request.add_scope(Scope::new(scope.to_string()));
        }
        let (url, _) = request.url();
        let back = open(url.to_string()).await.map_err(&refused)?;
        let code = redirected_code(&back, &self.config.redirect_uri, &state).map_err(&refused)?;
        let http = self.transport();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .map_err(|e| refused(format!("{:?}", classify::token_failure(&e, http.seen()))))?;
        let refresh_token = response
            .refresh_token()
            .map(|t| t.secret().clone())
            .ok_or_else(|| refused("no refresh token (offline_access not granted)".into()))?;
        let lifetime = response.expires_in().unwrap_or(Duration::from_secs(3600));
        let token = Token::new(
            response.access_token().secret(),
            self.clock.now() + lifetime,
        );
        self.store
            .connected(upn, tenant_id, &refresh_token, self.clock.now_utc())
            .map_err(|e| refused(e.to_string()))?;
        Ok(Connected {
            refresh_token,
            token,
        })
    }
}

/// The code of a redirect back to `redirect_uri` carrying `state`, or why there is none.
fn redirected_code(back: &str, redirect_uri: &str, state: &str) -> Result<String, String> {
    if !back.starts_with(redirect_uri) {
        return Err("the browser came back somewhere other than the redirect URI".into());
    }
    let url = url::Url::parse(back).map_err(|e| format!("unreadable redirect: {e}"))?;
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if let Some(error) = param("error") {
        let code = param("error_description")
            .and_then(|d| classify::aadsts_code(&d))
            .map_or_else(String::new, |c| format!(" AADSTS{c}"));
        return Err(format!("the authorization endpoint answered {error}{code}"));
    }
    if param("state").as_deref() != Some(state) {
        return Err("the redirect's state is not the request's (a forged callback?)".into());
    }
    param("code").ok_or_else(|| "the redirect carries no code".into())
}

impl AppTokens {
    /// The app's hold for this secret value, if it runs; a held `Retry-After` counts down.
    fn held(&self, secret: Option<&Secret>) -> Option<Failure> {
        let hold = self.hold.lock().unwrap_or_else(|p| p.into_inner());
        let held = hold.as_ref()?;
        // A refused credential is the secret's: a new value ends its hold. A Retry-After is
        // the endpoint's: it stands whatever secret comes next.
        let until = if held.secret.as_ref() == secret {
            held.until
        } else {
            held.retry_until?
        };
        let now = self.clock.now();
        if now >= until {
            return None;
        }
        Some(match &held.failure {
            Failure::Transient {
                reason,
                retry_after: Some(_),
            } => Failure::Transient {
                reason: reason.clone(),
                retry_after: Some(until - now),
            },
            other => other.clone(),
        })
    }

    /// Whether a user may refresh now: `Ok` with the probe's guard while the app's hold has
    /// run out (one user probes for the app; the others wait for its answer), `Err` with the
    /// held failure while it runs.
    async fn gate(
        &self,
        secret: Option<&Secret>,
    ) -> Result<Option<tokio::sync::MutexGuard<'_, ()>>, Failure> {
        let holding = self
            .hold
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        if !holding && !self.resume(secret) {
            return Ok(None);
        }
        if let Some(failure) = self.held(secret) {
            return Err(failure);
        }
        let guard = self.probe.lock().await;
        // The probe before this one may have failed again while this user waited.
        match self.held(secret) {
            Some(failure) => Err(failure),
            None => Ok(Some(guard)),
        }
    }

    /// Holds the app after its own failure: 1 s doubling to the cap, and at least twice the
    /// gap since the failure before, jittered over its last quarter, never before
    /// `Retry-After`.
    fn hold(&self, failure: &Failure, secret: Option<Secret>) {
        let Some(cap) = self.config.app_hold_cap else {
            return;
        };
        let mut hold = self.hold.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now();
        let (refusals, since_last) = match hold.as_ref() {
            Some(h) if h.secret == secret => (
                h.refusals.saturating_add(1),
                now.saturating_duration_since(h.at),
            ),
            _ => (0, Duration::ZERO),
        };
        let retry_after = match failure {
            Failure::Transient { retry_after, .. } if self.config.read_retry_after => {
                retry_after.unwrap_or_default()
            }
            _ => Duration::ZERO,
        };
        let spread = self
            .jitter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .map_or(1.0, |rng| 0.75 + 0.25 * rng.unit());
        let wait = Duration::from_secs(1)
            .saturating_mul(2u32.saturating_pow(refusals.min(20)))
            .max(since_last.saturating_mul(2))
            .min(cap)
            .mul_f64(spread)
            .max(retry_after);
        self.keep(failure, secret.as_ref(), wait, refusals);
        *hold = Some(AppHold {
            failure: failure.clone(),
            secret,
            until: now + wait,
            refusals,
            at: now,
            retry_until: (!retry_after.is_zero()).then(|| now + retry_after),
        });
    }

    fn cleared(&self) {
        let had = self.hold.lock().unwrap_or_else(|p| p.into_inner()).take();
        if had.is_some_and(|h| matches!(h.failure, Failure::Credential(_))) {
            self.store.save(None);
        }
    }

    /// Resumes the hold a process before this one kept for this secret value (a crash loop
    /// or a redeploy during an expiry must not probe Entra afresh); whether there was one.
    /// Looked up only while the app holds nothing, once per process.
    fn resume(&self, secret: Option<&Secret>) -> bool {
        if self.resumed.swap(true, Ordering::Relaxed) {
            return false;
        }
        let Some(stored) = self.store.load() else {
            return false;
        };
        if secret.is_none_or(|s| fingerprint(s) != stored.secret) {
            return false;
        }
        let left = (stored.until - self.clock.now_utc())
            .to_std()
            .unwrap_or_default();
        let now = self.clock.now();
        *self.hold.lock().unwrap_or_else(|p| p.into_inner()) = Some(AppHold {
            failure: Failure::Credential(CredentialProblem::from_code(stored.code)),
            secret: secret.cloned(),
            until: now + left,
            refusals: stored.refusals,
            at: now,
            retry_until: None,
        });
        true
    }

    /// Keeps a refused credential's hold in the database for the next process.
    fn keep(&self, failure: &Failure, secret: Option<&Secret>, wait: Duration, refusals: u32) {
        if let (Failure::Credential(problem), Some(secret)) = (failure, secret) {
            self.store.save(Some(&StoredHold {
                secret: fingerprint(secret),
                code: problem.code(),
                until: self.clock.now_utc() + crate::time::to_chrono(wait),
                refusals,
            }));
        }
    }

    /// One refresh of `refresh_token` for `scope`: the access token and the rotated refresh
    /// token, or whose failure it was.
    async fn refresh(
        &self,
        secret: Option<&Secret>,
        refresh_token: &str,
        scope: &str,
    ) -> Result<(Token, Option<String>), Refusal> {
        let client = self.oauth(secret).map_err(Refusal::App)?;
        let http = self.transport();
        let token = RefreshToken::new(refresh_token.to_string());
        let mut request = client.exchange_refresh_token(&token);
        for scope in delegated_scopes(scope) {
            request = request.add_scope(Scope::new((*scope).to_string()));
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        match request.request_async(&http).await {
            Ok(response) => {
                let lifetime = response.expires_in().unwrap_or(Duration::from_secs(3600));
                let token = Token::new(
                    response.access_token().secret(),
                    self.clock.now() + lifetime,
                )
                .ok_or_else(|| {
                    Refusal::App(Failure::Transient {
                        reason: "an access token no header can carry".into(),
                        retry_after: None,
                    })
                })?;
                Ok((token, response.refresh_token().map(|t| t.secret().clone())))
            }
            Err(error) => Err(refusal(&error, http.seen(), self.config.client_refusal)),
        }
    }
}

/// The delegated scopes standing for a client-credentials `.default` scope: the resource's
/// permissions the user consented to, and a new refresh token.
fn delegated_scopes(scope: &str) -> &'static [&'static str] {
    if scope.starts_with("https://graph.microsoft.com") {
        &[GRAPH_MAIL_SEND, GRAPH_MAIL_READ, "offline_access"]
    } else {
        &[SMTP_SEND, "offline_access"]
    }
}

/// Whose failure a refused refresh is (wire reference §8.4: `invalid_grant` and the
/// interaction errors are one user's grant; `unauthorized_client` 7000112 or 700016 is the
/// app disabled or missing in the user's tenant; `invalid_client` the app's credential,
/// unless configured otherwise; throttling and outages are the endpoint's, the app's).
fn refusal<E: std::error::Error>(
    error: &RequestTokenError<E, BasicErrorResponse>,
    seen: Option<Seen>,
    client_refusal: Blame,
) -> Refusal {
    let unwell = seen.is_some_and(|s| s.status >= 500 || s.status == 429);
    if let RequestTokenError::ServerResponse(response) = error
        && !unwell
    {
        let code = response
            .error_description()
            .and_then(|d| classify::aadsts_code(d));
        let users = match response.error() {
            BasicErrorResponseType::InvalidGrant => true,
            BasicErrorResponseType::Extension(kind) => {
                kind == "interaction_required" || kind == "consent_required"
            }
            BasicErrorResponseType::UnauthorizedClient => matches!(code, Some(7000112 | 700016)),
            BasicErrorResponseType::InvalidClient => client_refusal == Blame::User,
            _ => false,
        };
        if users {
            let reason =
                code.map_or_else(|| response.error().to_string(), |c| format!("AADSTS{c}"));
            return Refusal::User(reason);
        }
    }
    Refusal::App(classify::token_failure(error, seen))
}

/// One connected user's tokens: a cache per resource, one refresh in flight.
pub struct UserTokens {
    app: Arc<AppTokens>,
    upn: String,
    /// Graph's token and SMTP's.
    cache: Mutex<[Option<Token>; 2]>,
    flight: tokio::sync::Mutex<()>,
    state: Mutex<UserState>,
}

struct UserState {
    refresh_token: String,
    needs_user: Option<String>,
    /// When a tenant-level refusal is tried again.
    recheck_at: Option<tokio::time::Instant>,
}

impl std::fmt::Debug for UserTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserTokens")
            .field("upn", &self.upn)
            .finish_non_exhaustive()
    }
}

fn slot(scope: &str) -> usize {
    usize::from(!scope.starts_with("https://graph.microsoft.com"))
}

impl UserTokens {
    /// The tokens of a kept connection.
    pub fn new(app: Arc<AppTokens>, connection: &Connection) -> UserTokens {
        // A new process tries a tenant-level refusal again at once.
        let recheck_at = match &connection.status {
            Status::NeedsUser(reason) if tenant_level(reason) => Some(app.clock.now()),
            _ => None,
        };
        UserTokens {
            app,
            upn: connection.upn.clone(),
            cache: Mutex::new([None, None]),
            flight: tokio::sync::Mutex::new(()),
            state: Mutex::new(UserState {
                refresh_token: connection.refresh_token.clone(),
                needs_user: match &connection.status {
                    Status::Connected => None,
                    Status::NeedsUser(reason) => Some(reason.clone()),
                },
                recheck_at,
            }),
        }
    }

    /// The user.
    pub fn upn(&self) -> &str {
        &self.upn
    }

    /// Why the user must reconnect, if they must.
    pub fn needs_user(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .needs_user
            .clone()
    }

    /// The user connected again: a new refresh token, and the code's Graph token.
    pub fn reconnected(&self, connected: &Connected) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.refresh_token.clone_from(&connected.refresh_token);
        state.needs_user = None;
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = [connected.token.clone(), None];
    }

    fn cached(&self, scope: &str) -> Option<Token> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())[slot(scope)].clone()
    }

    fn still_valid(&self, scope: &str) -> Option<Token> {
        self.cached(scope)
            .filter(|t| self.app.clock.now() < t.expires_at)
    }

    /// A token for `scope`: the cached one while fresh, else one refresh for this user however
    /// many callers wait, unless the app is held or the user must reconnect.
    pub async fn token(&self, scope: &str) -> Result<Token, Failure> {
        let ahead = self.app.config.refresh_ahead;
        let fresh = |t: &Token| self.app.clock.now() + ahead < t.expires_at;
        if let Some(token) = self.cached(scope).filter(fresh) {
            return Ok(token);
        }
        let _flight = self.flight.lock().await;
        if let Some(token) = self.cached(scope).filter(fresh) {
            return Ok(token);
        }
        let refused = |failure: Failure| self.still_valid(scope).ok_or(failure);
        if let Some(reason) = self.needs_user()
            && !self.recheck_due()
        {
            return refused(needs_user_failure(&reason));
        }
        let secret = self.app.config.secret.current().ok();
        let _probe = match self.app.gate(secret.as_ref()).await {
            Ok(guard) => guard,
            Err(failure) => return refused(failure),
        };
        let refresh_token = self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .refresh_token
            .clone();
        match self.attempts(secret.as_ref(), &refresh_token, scope).await {
            Ok((token, rotated)) => {
                self.app.cleared();
                self.restored().await;
                if let Some(rotated) = rotated {
                    let now = self.app.clock.now_utc();
                    // A lost write costs only an older refresh token, which still works.
                    let _ = self.app.store.rotated(&self.upn, &rotated, now);
                    self.state
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .refresh_token = rotated;
                }
                self.cache.lock().unwrap_or_else(|p| p.into_inner())[slot(scope)] =
                    Some(token.clone());
                Ok(token)
            }
            Err(Refusal::App(failure)) => {
                self.app.hold(&failure, secret);
                refused(failure)
            }
            Err(Refusal::User(reason)) => {
                self.lose(&reason).await;
                refused(needs_user_failure(&reason))
            }
        }
    }

    /// The refresh, tried up to the configured attempts.
    async fn attempts(
        &self,
        secret: Option<&Secret>,
        refresh_token: &str,
        scope: &str,
    ) -> Result<(Token, Option<String>), Refusal> {
        let config = &self.app.config;
        let mut attempt = 1;
        loop {
            match self.app.refresh(secret, refresh_token, scope).await {
                Err(_) if attempt < config.refresh_attempts => {
                    attempt += 1;
                    self.app.clock.sleep(config.refresh_every).await;
                }
                outcome => return outcome,
            }
        }
    }

    /// Whether a tenant-level refusal is due to be tried again (then the next is scheduled).
    fn recheck_due(&self) -> bool {
        let now = self.app.clock.now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.recheck_at {
            Some(at) if at <= now => {
                state.recheck_at = Some(now + TENANT_RECHECK);
                true
            }
            _ => false,
        }
    }

    /// A connection refused for its tenant works again (its admin mended it): connected
    /// again, and the product's notice resolved.
    async fn restored(&self) {
        let reason = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.recheck_at = None;
            state.needs_user.take()
        };
        let Some(reason) = reason else {
            return;
        };
        let now = self.app.clock.now_utc();
        // A lost write is found again at the next refresh after a restart.
        let _ = self.app.store.restored(&self.upn, now);
        let summary = format!("{} works again ({reason} mended)", self.upn);
        let details = serde_json::json!({"user": self.upn});
        self.notice("resolve", summary, details, now).await;
    }

    /// Tells the product about this user's connection: an `info` event, never a page, keyed
    /// by the user so a resolve closes the trigger.
    async fn notice(
        &self,
        action: &'static str,
        summary: String,
        details: serde_json::Value,
        at: chrono::DateTime<chrono::Utc>,
    ) {
        self.app
            .alerter
            .raise(AlertEvent {
                action,
                kind: NEEDS_USER,
                dedup_key: format!("{NEEDS_USER}:{}", self.upn),
                summary,
                severity: Severity::Info,
                at,
                details,
            })
            .await;
    }

    /// The connection needs its user: kept so (or forgotten, as configured), and the product
    /// told, once per loss. A tenant-level refusal is tried again now and then.
    async fn lose(&self, reason: &str) {
        let now = self.app.clock.now_utc();
        let forget = self.app.config.on_needs_user == OnNeedsUser::Forget;
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.needs_user.is_some() && !forget {
                // A recheck that failed again: the product knows already.
                return;
            }
            state.needs_user = Some(reason.to_string());
            state.recheck_at =
                (tenant_level(reason) && !forget).then(|| self.app.clock.now() + TENANT_RECHECK);
            if forget {
                state.refresh_token.clear();
            }
        }
        // A lost write is found again at the next refresh after a restart.
        let _ = self.app.store.needs_user(&self.upn, reason, forget, now);
        let summary = format!("{} must reconnect their mailbox ({reason})", self.upn);
        let details = serde_json::json!({"user": self.upn, "reason": reason});
        self.notice("trigger", summary, details, now).await;
    }
}

fn needs_user_failure(reason: &str) -> Failure {
    Failure::Credential(CredentialProblem::Other(classify::aadsts_code(reason)))
}

impl TokenSource for UserTokens {
    fn token<'a>(&'a self, scope: &'a str) -> TokenFuture<'a> {
        // A fresh cached token (nearly every call: a sync round every few minutes per user)
        // skips boxing the refresh's large future.
        let ahead = self.app.config.refresh_ahead;
        let now = self.app.clock.now();
        match self.cached(scope).filter(|t| now + ahead < t.expires_at) {
            Some(token) => Box::pin(std::future::ready(Ok(token))),
            None => Box::pin(UserTokens::token(self, scope)),
        }
    }

    fn invalidate(&self, scope: &str) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())[slot(scope)] = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::transport::TransportFuture;
    use crate::time::VirtualClock;

    const GRAPH: &str = "https://graph.microsoft.com/.default";

    /// A token endpoint that answers every request after a second with one reply, and an
    /// alert sink that takes everything.
    #[derive(Debug)]
    struct Entra {
        clock: SharedClock,
        reply: Mutex<(u16, &'static str)>,
        requests: AtomicU64,
    }

    impl HttpTransport for Entra {
        fn send(
            &self,
            request: http::Request<Vec<u8>>,
        ) -> TransportFuture<'_, http::Response<Vec<u8>>> {
            Box::pin(async move {
                if !request.uri().path().ends_with("/token") {
                    return Ok(http::Response::builder()
                        .status(202)
                        .body(Vec::new())
                        .unwrap());
                }
                let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
                self.clock.sleep(Duration::from_secs(1)).await;
                let (status, body) = *self.reply.lock().unwrap();
                let body = body.replace("{n}", &n.to_string());
                Ok(http::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(body.into_bytes())
                    .unwrap())
            })
        }
    }

    const OK: (u16, &str) = (
        200,
        r#"{"token_type":"Bearer","access_token":"at-{n}","expires_in":3600,"refresh_token":"rt-{n}"}"#,
    );
    const EXPIRED: (u16, &str) = (
        401,
        r#"{"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys are expired."}"#,
    );
    const RESET: (u16, &str) = (
        400,
        r#"{"error":"invalid_grant","error_description":"AADSTS50173: The provided grant has expired due to it being revoked."}"#,
    );

    struct World {
        entra: Arc<Entra>,
        store: Arc<Outbox>,
        app: Arc<AppTokens>,
    }

    impl World {
        fn new() -> World {
            let start: chrono::DateTime<chrono::Utc> = "2025-02-14T09:00:00Z".parse().unwrap();
            let clock = VirtualClock::starting_at(start).shared();
            let entra = Arc::new(Entra {
                clock: clock.clone(),
                reply: Mutex::new(OK),
                requests: AtomicU64::new(0),
            });
            let store = Arc::new(Outbox::in_memory().unwrap());
            let alerter = Arc::new(Alerter::new(
                entra.clone(),
                "https://alerts.example/v2/enqueue".into(),
                "key".into(),
                clock.clone(),
            ));
            let config = DelegatedConfig::new(
                "app",
                "https://login.example/organizations/oauth2/v2.0/authorize",
                "https://login.example/organizations/oauth2/v2.0/token",
                "https://crm.example/callback",
                SecretSource::Value(Secret::new("s3cret")),
            );
            let app = AppTokens::new(config, clock, entra.clone(), store.clone(), alerter);
            World {
                entra,
                store,
                app: Arc::new(app),
            }
        }

        fn user(&self, upn: &str) -> Arc<UserTokens> {
            let now = self.app.clock.now_utc();
            self.store.connected(upn, "tid", "rt-0", now).unwrap();
            let connection = self.store.connection(upn).unwrap().unwrap();
            Arc::new(UserTokens::new(self.app.clone(), &connection))
        }

        fn requests(&self) -> u64 {
            self.entra.requests.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn one_refresh_per_user_however_many_wait_and_the_rotated_token_is_kept() {
        crate::time::replay_runtime().unwrap().block_on(async {
            let world = World::new();
            let alice = world.user("alice@x.example");
            let waits = (0..10).map(|_| alice.token(GRAPH));
            let tokens = futures_util::future::join_all(waits).await;
            assert!(
                tokens
                    .iter()
                    .all(|t| t.as_ref().unwrap().expose() == "at-1")
            );
            assert_eq!(world.requests(), 1, "one refresh in flight for the user");
            let kept = world.store.connection("alice@x.example").unwrap().unwrap();
            assert_eq!(
                kept.refresh_token, "rt-1",
                "the rotated refresh token is kept"
            );
            // Another user refreshes on their own.
            let bob = world.user("bob@y.example");
            bob.token(GRAPH).await.unwrap();
            assert_eq!(world.requests(), 2);
        });
    }

    #[test]
    fn the_apps_failure_holds_every_user_and_marks_no_connection() {
        crate::time::replay_runtime().unwrap().block_on(async {
            let world = World::new();
            let (alice, bob) = (world.user("alice@x.example"), world.user("bob@y.example"));
            *world.entra.reply.lock().unwrap() = EXPIRED;
            assert!(matches!(
                alice.token(GRAPH).await,
                Err(Failure::Credential(CredentialProblem::Expired))
            ));
            assert!(bob.token(GRAPH).await.is_err());
            assert_eq!(
                world.requests(),
                1,
                "the hold answers bob without a request"
            );
            assert!(world.app.held_now());
            world.app.clock.sleep(Duration::from_secs(2)).await;
            *world.entra.reply.lock().unwrap() = OK;
            bob.token(GRAPH).await.unwrap();
            alice.token(GRAPH).await.unwrap();
            assert_eq!(world.requests(), 3, "one probe, then alice's own refresh");
            let statuses: Vec<Status> = world
                .store
                .connections()
                .unwrap()
                .into_iter()
                .map(|c| c.status)
                .collect();
            assert_eq!(statuses, [Status::Connected, Status::Connected]);
        });
    }

    #[test]
    fn a_restarted_process_resumes_the_apps_hold_instead_of_probing_afresh() {
        crate::time::replay_runtime().unwrap().block_on(async {
            let world = World::new();
            let alice = world.user("alice@x.example");
            *world.entra.reply.lock().unwrap() = EXPIRED;
            assert!(alice.token(GRAPH).await.is_err());
            // The next process: same database, nothing in memory.
            let config = world.app.config.clone();
            let (clock, store) = (world.app.clock.clone(), world.store.clone());
            let alerter = world.app.alerter.clone();
            let next = Arc::new(AppTokens::new(
                config,
                clock,
                world.entra.clone(),
                store,
                alerter,
            ));
            let connection = world.store.connection("alice@x.example").unwrap().unwrap();
            let again = UserTokens::new(next.clone(), &connection);
            assert!(again.token(GRAPH).await.is_err());
            assert_eq!(
                world.requests(),
                1,
                "the kept hold answers without a request"
            );
            world.app.clock.sleep(Duration::from_secs(2)).await;
            *world.entra.reply.lock().unwrap() = OK;
            again.token(GRAPH).await.unwrap();
            assert_eq!(world.requests(), 2);
            assert!(
                world.store.load().is_none(),
                "a success forgets the kept hold"
            );
        });
    }

    #[test]
    fn a_users_failure_marks_only_that_connection_and_stops_its_refreshes() {
        crate::time::replay_runtime().unwrap().block_on(async {
            let world = World::new();
            let (alice, bob) = (world.user("alice@x.example"), world.user("bob@y.example"));
            *world.entra.reply.lock().unwrap() = RESET;
            assert!(alice.token(GRAPH).await.is_err());
            assert_eq!(alice.needs_user().as_deref(), Some("AADSTS50173"));
            assert!(alice.token(GRAPH).await.is_err());
            assert_eq!(
                world.requests(),
                1,
                "no refresh for a user who must reconnect"
            );
            assert!(
                !world.app.held_now(),
                "the app is not held for a user's failure"
            );
            *world.entra.reply.lock().unwrap() = OK;
            bob.token(GRAPH).await.unwrap();
            let kept = world.store.connection("alice@x.example").unwrap().unwrap();
            assert_eq!(kept.status, Status::NeedsUser("AADSTS50173".into()));
            assert_eq!(
                kept.refresh_token, "rt-0",
                "kept for the product, not forgotten"
            );
        });
    }
}
