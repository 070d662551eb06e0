//! The token provider: client credentials on the `oauth2` crate, a cache per scope, refresh
//! ahead of `exp`, one request in flight however many senders wait, and failures classified.
//!
//! A failed request is held: until its hold ends (1 s, doubling to 5 min over failures in a
//! row, and at least twice the time since the failure before, never before the endpoint's
//! `Retry-After`) every caller, the sender, the monitors and
//! the sync alike, gets the same failure without a request, so however many parts of the
//! client ask, Entra sees one probe per interval. A new secret value ends the hold at once.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, Scope, TokenResponse as _, TokenUrl};
use tokio::time::Instant;

use chrono::{DateTime, Utc};

use super::certificate::{AssertionClaims, CertificateSource, JWT_BEARER, ThumbprintHeader};
use super::classify::{self, CredentialProblem, Failure, Seen};
use super::secret::{Secret, SecretSource};
use super::transport::{HttpTransport, TransportError};
use crate::seed::SeedRng;
use crate::time::{ClockExt as _, SharedClock};

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// `client_secret_basic` (the oauth2 crate's default).
    #[default]
    Basic,
    /// `client_secret_post`.
    Body,
}

/// Token provider settings.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`.
    pub token_url: String,
    /// The app's client id.
    pub client_id: String,
    /// Where the secret is read from (or the certificate, [`SecretSource::Certificate`]).
    pub secret: SecretSource,
    /// Which thumbprint header a client assertion carries.
    pub thumbprint_header: ThumbprintHeader,
    /// How long a client assertion is valid (`exp` - `nbf`; the documentation advises 5 to 10
    /// minutes).
    pub assertion_lifetime: Duration,
    /// Secret in the body or in a Basic header.
    pub auth: ClientAuth,
    /// Refresh this long before `exp`.
    pub refresh_ahead: Duration,
    /// Give up on a token request after this long on the clock.
    pub request_timeout: Duration,
    /// The longest hold after a failed request (the first is 1 s, then it doubles); zero turns
    /// holding off. A longer `Retry-After` is honoured as given.
    pub refusal_hold_cap: Duration,
    /// At most this many failed token requests in any rolling hour: past it, the hold lasts
    /// until the oldest of them is an hour old. A new secret value is still tried at once (a
    /// rotation must not wait), but its failures count too. Applies only while holding is on.
    pub failure_budget: u32,
    /// Whether a throttled or unavailable endpoint's `Retry-After` lengthens the hold (it
    /// should; a client that ignores it hammers a throttled endpoint).
    pub read_retry_after: bool,
}

impl TokenConfig {
    /// Settings with the defaults: Basic auth, refresh 5 min ahead, 30 s timeout, 5 min hold,
    /// 20 failed requests an hour.
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        secret: SecretSource,
    ) -> TokenConfig {
        TokenConfig {
            token_url: token_url.into(),
            client_id: client_id.into(),
            secret,
            thumbprint_header: ThumbprintHeader::default(),
            assertion_lifetime: Duration::from_secs(600),
            auth: ClientAuth::Basic,
            refresh_ahead: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
            refusal_hold_cap: Duration::from_secs(300),
            failure_budget: 20,
            read_retry_after: true,
        }
    }
}

/// A refused credential as a client keeps it across restarts, so a new process (a crash loop,
/// a redeploy) resumes the hold instead of probing Entra afresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHold {
    /// A fingerprint of the refused secret (a hash prefix, never the value).
    pub secret: String,
    /// The AADSTS code of the refusal.
    pub code: Option<u32>,
    /// When the hold ends, on the calendar.
    pub until: DateTime<Utc>,
    /// Refusals in a row.
    pub refusals: u32,
}

/// Where a client keeps its [`StoredHold`] (its database).
pub trait HoldStore: Send + Sync + fmt::Debug {
    /// The hold kept, if any.
    fn load(&self) -> Option<StoredHold>;
    /// Keeps `hold`, or forgets it (`None`, after a success).
    fn save(&self, hold: Option<&StoredHold>);
}

/// The fingerprint of a secret in a [`StoredHold`].
pub(super) fn fingerprint(secret: &Secret) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(secret.expose().as_bytes());
    let mut hex = String::with_capacity(16);
    crate::seed::push_hex(&mut hex, &digest[..8]);
    hex
}

/// A failed token request and until when callers get it again without a new request.
struct Refusal {
    failure: Failure,
    secret: Option<Secret>,
    until: Instant,
    refusals: u32,
    /// When the request failed (`None` for a hold resumed from the store).
    at: Option<Instant>,
    /// The end of the endpoint's `Retry-After`, which holds for any secret.
    retry_until: Option<Instant>,
}

/// An access token. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct Token {
    value: Arc<str>,
    /// `Bearer {value}`, built once: a cached token is sent on every call for an hour.
    authorization: http::HeaderValue,
    /// When it stops working, on the client's monotonic clock.
    pub expires_at: Instant,
}

impl Token {
    /// A token valid until `expires_at`; `None` when it holds bytes no header can carry.
    pub fn new(value: &str, expires_at: Instant) -> Option<Token> {
        let mut authorization = http::HeaderValue::from_str(&format!("Bearer {value}")).ok()?;
        authorization.set_sensitive(true);
        Some(Token {
            value: value.into(),
            authorization,
            expires_at,
        })
    }

    /// The bearer value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The `Authorization` header that carries it (marked sensitive).
    pub fn authorization(&self) -> http::HeaderValue {
        self.authorization.clone()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A boxed future of a token.
pub type TokenFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Token, Failure>> + Send + 'a>>;

/// Where a sender or a sync gets its access tokens: the app's own (client credentials, a
/// [`TokenProvider`]) or a connected user's (`client::delegated`).
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// A token for `scope` (cached while fresh).
    fn token<'a>(&'a self, scope: &'a str) -> TokenFuture<'a>;
    /// Forgets the cached token for `scope` (the resource refused it).
    fn invalidate(&self, scope: &str);
}

impl TokenSource for TokenProvider {
    fn token<'a>(&'a self, scope: &'a str) -> TokenFuture<'a> {
        Box::pin(TokenProvider::token(self, scope))
    }

    fn invalidate(&self, scope: &str) {
        TokenProvider::invalidate(self, scope);
    }
}

/// Fetches and caches access tokens.
pub struct TokenProvider {
    config: TokenConfig,
    clock: SharedClock,
    http: Arc<dyn HttpTransport>,
    cache: Mutex<BTreeMap<String, Token>>,
    flight: tokio::sync::Mutex<()>,
    requests: std::sync::atomic::AtomicU64,
    refusal: Mutex<Option<Refusal>>,
    /// When the failed requests of the last hour were sent (the failure budget).
    failed_at: Mutex<std::collections::VecDeque<Instant>>,
    store: Option<Arc<dyn HoldStore>>,
    /// Spreads each hold over its last quarter, so clients refused together do not return
    /// together; `None` holds exactly.
    jitter: Mutex<Option<SeedRng>>,
    /// Draws each client assertion's `jti`.
    assertion_ids: Mutex<SeedRng>,
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenProvider")
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// A provider over a transport and a clock.
    pub fn new(
        config: TokenConfig,
        clock: SharedClock,
        http: Arc<dyn HttpTransport>,
    ) -> TokenProvider {
        TokenProvider {
            config,
            clock,
            http,
            cache: Mutex::new(BTreeMap::new()),
            flight: tokio::sync::Mutex::new(()),
            requests: std::sync::atomic::AtomicU64::new(0),
            refusal: Mutex::new(None),
            failed_at: Mutex::default(),
            store: None,
            jitter: Mutex::new(None),
            // Replaced by the process's own stream (`with_assertion_ids`); a fixed stream
            // still gives a fresh id per assertion.
            assertion_ids: Mutex::new(crate::seed::Seed(0).stream("client.assertion-ids")),
        }
    }

    /// Draws client assertion ids (`jti`) from `rng`.
    pub fn with_assertion_ids(self, rng: SeedRng) -> TokenProvider {
        *self.assertion_ids.lock().unwrap_or_else(|p| p.into_inner()) = rng;
        self
    }

    /// Draws each hold from its last quarter with `rng`.
    pub fn with_jitter(self, rng: SeedRng) -> TokenProvider {
        *self.jitter.lock().unwrap_or_else(|p| p.into_inner()) = Some(rng);
        self
    }

    /// Keeps refused credentials in `store` too, and resumes a hold found there.
    pub fn with_hold_store(mut self, store: Arc<dyn HoldStore>) -> TokenProvider {
        self.store = Some(store);
        self
    }

    /// Token requests sent so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn cached(&self, scope: &str) -> Option<Token> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(scope)
            .cloned()
    }

    /// Forgets the cached token (the resource refused it).
    pub fn invalidate(&self, scope: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(scope);
    }

    /// A token for `scope`: the cached one while fresh, else one new request shared by every
    /// caller waiting at the same time. A refresh that fails while the cached token still
    /// works returns the cached token: tokens outlive the secret that got them.
    pub async fn token(&self, scope: &str) -> Result<Token, Failure> {
        let fresh =
            |token: &Token, now: Instant| now + self.config.refresh_ahead < token.expires_at;
        if let Some(token) = self.cached(scope).filter(|t| fresh(t, self.clock.now())) {
            return Ok(token);
        }
        let _flight = self.flight.lock().await;
        // Another caller may have refreshed while this one waited for the flight.
        if let Some(token) = self.cached(scope).filter(|t| fresh(t, self.clock.now())) {
            return Ok(token);
        }
        let secret = self.config.secret.current().ok();
        if let Some(held) = self.held(secret.as_ref()) {
            return match self.still_valid(scope) {
                Some(token) => Ok(token),
                None => Err(held),
            };
        }
        match self.fetch(scope).await {
            Ok(token) => {
                let had_hold = self
                    .refusal
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .is_some();
                if had_hold && let Some(store) = &self.store {
                    store.save(None);
                }
                self.failed_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                self.cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(scope.to_string(), token.clone());
                Ok(token)
            }
            Err(failure) => {
                self.hold(&failure, secret);
                match self.still_valid(scope) {
                    Some(still_valid) => Ok(still_valid),
                    None => Err(failure),
                }
            }
        }
    }

    fn still_valid(&self, scope: &str) -> Option<Token> {
        self.cached(scope)
            .filter(|t| self.clock.now() < t.expires_at)
    }

    /// The failure still held for this secret value, if any; a held `Retry-After` counts
    /// down.
    fn held(&self, secret: Option<&Secret>) -> Option<Failure> {
        let mut refusal = self.refusal.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now();
        if refusal.is_none()
            && let Some(store) = &self.store
            && let Some(stored) = store.load()
            && secret.is_some_and(|s| fingerprint(s) == stored.secret)
        {
            // A hold from the process before this one.
            let left = (stored.until - self.clock.now_utc())
                .to_std()
                .unwrap_or_default();
            *refusal = Some(Refusal {
                failure: Failure::Credential(CredentialProblem::from_code(stored.code)),
                secret: secret.cloned(),
                until: now + left,
                refusals: stored.refusals,
                at: None,
                retry_until: None,
            });
        }
        // A refused credential is the secret's: a new value ends its hold. A Retry-After is
        // the endpoint's, asked of the whole app: it stands whatever secret comes next.
        let held = refusal.as_ref()?;
        let until = if held.secret.as_ref() == secret {
            held.until
        } else {
            held.retry_until?
        };
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

    fn hold(&self, failure: &Failure, secret: Option<Secret>) {
        if self.config.refusal_hold_cap.is_zero() {
            return;
        }
        let mut refusal = self.refusal.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now();
        let (refusals, since_last) = match refusal.as_ref() {
            Some(r) if r.secret == secret => (
                r.refusals.saturating_add(1),
                r.at.map_or(Duration::ZERO, |at| now.saturating_duration_since(at)),
            ),
            _ => (0, Duration::ZERO),
        };
        let retry_after = match failure {
            Failure::Transient { retry_after, .. } if self.config.read_retry_after => {
                retry_after.unwrap_or_default()
            }
            _ => Duration::ZERO,
        };
        // Callers that come back on their own cadence (a sync every minute, a refresh ahead
        // of expiry) would otherwise meet an expired hold each time, and Entra would see
        // failures at that steady rate: the hold doubles the gap actually seen as well.
        let hold = Duration::from_secs(1)
            .saturating_mul(2u32.saturating_pow(refusals.min(20)))
            .max(since_last.saturating_mul(2))
            .min(self.config.refusal_hold_cap)
            .mul_f64(self.spread())
            .max(retry_after)
            .max(self.budget_wait());
        if let (Failure::Credential(problem), Some(store), Some(value)) =
            (failure, &self.store, secret.as_ref())
        {
            store.save(Some(&StoredHold {
                secret: fingerprint(value),
                code: problem.code(),
                until: self.clock.now_utc() + crate::time::to_chrono(hold),
                refusals,
            }));
        }
        *refusal = Some(Refusal {
            failure: failure.clone(),
            secret,
            until: now + hold,
            refusals,
            at: Some(now),
            retry_until: (!retry_after.is_zero()).then(|| now + retry_after),
        });
    }

    /// A factor in [0.75, 1]: still at least 1.5 times the gap before, so holds keep growing.
    fn spread(&self) -> f64 {
        self.jitter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .map_or(1.0, |rng| 0.75 + 0.25 * rng.unit())
    }

    /// Notes a failed request now; how long until one more keeps within the failure budget.
    fn budget_wait(&self) -> Duration {
        const HOUR: Duration = Duration::from_secs(3600);
        let now = self.clock.now();
        let mut failed = self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        failed.push_back(now);
        while failed.front().is_some_and(|t| *t + HOUR <= now) {
            failed.pop_front();
        }
        let budget = self.config.failure_budget as usize;
        if budget == 0 || failed.len() < budget {
            return Duration::ZERO;
        }
        (failed[failed.len() - budget] + HOUR).saturating_duration_since(now)
    }

    async fn fetch(&self, scope: &str) -> Result<Token, Failure> {
        let secret = self
            .config
            .secret
            .current()
            .map_err(|e| Failure::Transient {
                reason: e.to_string(),
                retry_after: None,
            })?;
        let token_url =
            TokenUrl::new(self.config.token_url.clone()).map_err(|e| Failure::Permanent {
                reason: format!("bad token URL: {e}"),
            })?;
        let client =
            BasicClient::new(ClientId::new(self.config.client_id.clone())).set_token_uri(token_url);
        // A certificate signs an assertion sent in the body with the client id; a secret goes
        // in a Basic header or the body.
        let (client, assertion) = match &self.config.secret {
            SecretSource::Certificate(source) => {
                let assertion = self.assertion(source)?;
                (client.set_auth_type(AuthType::RequestBody), Some(assertion))
            }
            _ => (
                client
                    .set_client_secret(ClientSecret::new(secret.expose().to_string()))
                    .set_auth_type(match self.config.auth {
                        ClientAuth::Basic => AuthType::BasicAuth,
                        ClientAuth::Body => AuthType::RequestBody,
                    }),
                None,
            ),
        };
        let send = OAuthHttp {
            clock: self.clock.clone(),
            http: self.http.clone(),
            timeout: self.config.request_timeout,
            seen: Mutex::new(None),
        };
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut request = client
            .exchange_client_credentials()
            .add_scope(Scope::new(scope.to_string()));
        if let Some(assertion) = assertion {
            request = request
                .add_extra_param("client_assertion_type", JWT_BEARER)
                .add_extra_param("client_assertion", assertion);
        }
        let result = request.request_async(&send).await;
        match result {
            Ok(response) => {
                // Entra always sends expires_in; an hour is the documented default otherwise.
                let lifetime = response.expires_in().unwrap_or(Duration::from_secs(3600));
                Token::new(
                    response.access_token().secret(),
                    self.clock.now() + lifetime,
                )
                .ok_or_else(|| Failure::Transient {
                    reason: "the access token holds bytes an HTTP header cannot carry".into(),
                    retry_after: None,
                })
            }
            Err(error) => {
                let seen = *send.seen.lock().unwrap_or_else(|p| p.into_inner());
                Err(classify::token_failure(&error, seen))
            }
        }
    }
}

impl TokenProvider {
    /// A fresh client assertion from the certificate as it is now, at the token URL.
    fn assertion(&self, source: &CertificateSource) -> Result<String, Failure> {
        let unreadable = |e: super::certificate::CertificateError| Failure::Transient {
            reason: e.to_string(),
            retry_after: None,
        };
        let certificate = source.current().map_err(unreadable)?;
        let jti = self
            .assertion_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .guid();
        certificate
            .assertion(&AssertionClaims {
                client_id: &self.config.client_id,
                audience: &self.config.token_url,
                jti: &jti,
                now: self.clock.now_utc(),
                lifetime: self.config.assertion_lifetime,
                header: self.config.thumbprint_header,
            })
            .map_err(unreadable)
    }
}

/// oauth2's HTTP client slot, filled with the client's transport: requests time out on the
/// client's clock, and the status and `Retry-After` that oauth2 hides from its errors are kept.
pub(super) struct OAuthHttp {
    clock: SharedClock,
    http: Arc<dyn HttpTransport>,
    timeout: Duration,
    seen: Mutex<Option<Seen>>,
}

impl OAuthHttp {
    /// oauth2's HTTP client over `http`, timing out after `timeout` on `clock`.
    pub(super) fn new(clock: SharedClock, http: Arc<dyn HttpTransport>, timeout: Duration) -> Self {
        OAuthHttp {
            clock,
            http,
            timeout,
            seen: Mutex::new(None),
        }
    }

    /// What the transport saw of the last response.
    pub(super) fn seen(&self) -> Option<Seen> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<'c> oauth2::AsyncHttpClient<'c> for OAuthHttp {
    type Error = TransportError;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<oauth2::HttpResponse, TransportError>>
                + Send
                + 'c,
        >,
    >;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self
                .clock
                .timeout(self.timeout, self.http.send(request))
                .await
                .map_err(|elapsed| TransportError(elapsed.to_string()))??;
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| classify::parse_retry_after(v, self.clock.now_utc()));
            let status = response.status().as_u16();
            *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(Seen {
                status,
                retry_after,
            });
            Ok(response)
        })
    }
}
