//! Delegated, multi-tenant flows end to end: the `oauth2` crate's authorization code + PKCE +
//! refresh flow against the mock authorization and token endpoints over both wirings, every
//! user- and tenant-level refusal checked against `fixtures/wire/entra.toml`, and the incident:
//! an expired app secret fails every user's refresh until a new secret is in place.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use common::{SECRET, at};
use maildrill::tenant::{
    ConsentSpec, MailboxSpec, SecretSpec, SignInAudience, TenantSettings, TenantSpec, UserEvent,
    demo,
};
use maildrill::time::{ClockExt as _, replay_runtime};
use maildrill::{Directory, Seed, Sim, SocketOptions};
use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenResponse};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    TokenResponse as _, TokenUrl,
};
use serde_json::Value;

const LOGIN: &str = "https://login.microsoftonline.com";
const REDIRECT: &str = "https://crm.example/oauth/callback";
const FABRIKAM: &str = "0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e";
const NORTHWIND: &str = "1d2e3f4a-5b6c-4d7e-8f90-a1b2c3d4e5f6";
const LOCKED: &str = "2e3f4a5b-6c7d-4e8f-9a01-b2c3d4e5f607";
const ALICE: &str = "alice@fabrikam.onmicrosoft.com";
const BOB: &str = "bob@fabrikam.onmicrosoft.com";
const CAROL: &str = "carol@northwind.onmicrosoft.com";
const DAVE: &str = "dave@locked.onmicrosoft.com";
const GRAPH_SEND: &str = "https://graph.microsoft.com/Mail.Send";
const SMTP_SEND: &str = "https://outlook.office.com/SMTP.Send";
const GRAPH_READ: &str = "https://graph.microsoft.com/Mail.Read";

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

fn customer(
    id: &str,
    domain: &str,
    users: &[(&str, &str)],
    consents: Vec<ConsentSpec>,
) -> TenantSpec {
    TenantSpec {
        id: id.into(),
        domain: domain.into(),
        settings: TenantSettings::default(),
        apps: vec![],
        mailboxes: users
            .iter()
            .map(|(upn, oid)| MailboxSpec {
                id: (*oid).into(),
                upn: (*upn).into(),
                display_name: (*upn).into(),
            })
            .collect(),
        consents,
    }
}

/// The publisher's multi-tenant app (the demo app, secret ending at `secret_end`) and three
/// customers: Fabrikam (users consent themselves), Northwind (an admin consented for all),
/// Locked (only an admin may consent, and none has).
fn tenants(secret_end: DateTime<Utc>) -> Vec<TenantSpec> {
    let mut publisher = common::tenant(secret_end);
    publisher.apps[0].audience = SignInAudience::MultiTenant;
    publisher.apps[0].redirect_uris = vec![REDIRECT.into()];
    let admin = vec![ConsentSpec {
        app_id: demo::APP_ID.into(),
        admin: true,
    }];
    let mut locked = customer(
        LOCKED,
        "locked.onmicrosoft.com",
        &[(DAVE, "dddddddd-0000-4000-8000-000000000004")],
        vec![],
    );
    locked.settings.user_consent = false;
    vec![
        publisher,
        customer(
            FABRIKAM,
            "fabrikam.onmicrosoft.com",
            &[
                (ALICE, "aaaaaaaa-0000-4000-8000-000000000001"),
                (BOB, "bbbbbbbb-0000-4000-8000-000000000002"),
            ],
            vec![],
        ),
        customer(
            NORTHWIND,
            "northwind.onmicrosoft.com",
            &[(CAROL, "cccccccc-0000-4000-8000-000000000003")],
            admin,
        ),
        locked,
    ]
}

fn memory_sim(secret_end: DateTime<Utc>) -> Sim {
    let mut builder = Sim::builder()
        .start(at("2025-02-14T09:00:00Z"))
        .seed(Seed(14));
    for tenant in tenants(secret_end) {
        builder = builder.tenant(tenant);
    }
    builder.build_in_memory().unwrap()
}

fn client(base: &str, authority: &str, secret: &str) -> Client {
    BasicClient::new(ClientId::new(demo::APP_ID.into()))
        .set_client_secret(ClientSecret::new(secret.into()))
        .set_auth_uri(AuthUrl::new(format!("{base}/{authority}/oauth2/v2.0/authorize")).unwrap())
        .set_token_uri(TokenUrl::new(format!("{base}/{authority}/oauth2/v2.0/token")).unwrap())
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap())
}

/// A reply as the client sees it: status, `Location`, body.
struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    /// A query parameter of the redirect.
    fn param(&self, name: &str) -> Option<String> {
        let location = self.location.as_ref()?;
        let query = location.split_once('?')?.1;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// One HTTP transport for both wirings: the in-memory net, or reqwest over loopback TLS.
enum Net<'a> {
    Memory(&'a maildrill::wiring::memory::MemoryNet),
    Socket(&'a reqwest::Client),
}

impl Net<'_> {
    async fn send(&self, request: http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
        match self {
            Net::Memory(net) => net.send(request).await.unwrap(),
            Net::Socket(client) => {
                let (parts, body) = request.into_parts();
                let response = client
                    .request(parts.method, parts.uri.to_string())
                    .headers(parts.headers)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let mut out = http::Response::builder().status(response.status());
                for (name, value) in response.headers() {
                    out = out.header(name, value);
                }
                out.body(response.bytes().await.unwrap().to_vec()).unwrap()
            }
        }
    }

    async fn answer(&self, request: http::Request<Vec<u8>>) -> Answer {
        let response = self.send(request).await;
        Answer {
            status: response.status().as_u16(),
            location: response
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string()),
            body: String::from_utf8(response.into_body()).unwrap(),
        }
    }

    async fn get(&self, url: &str) -> Answer {
        self.answer(http::Request::get(url).body(Vec::new()).unwrap())
            .await
    }

    async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Answer {
        let mut body = form_urlencoded::Serializer::new(String::new());
        body.extend_pairs(form);
        let request = http::Request::post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.finish().into_bytes())
            .unwrap();
        self.answer(request).await
    }
}

/// A user's connection: PKCE verifier and the code from the authorization endpoint.
struct Connect {
    code: String,
    verifier: PkceCodeVerifier,
    state: Option<String>,
}

async fn authorize(net: &Net<'_>, client: &Client, user: &str, scopes: &[&str]) -> Answer {
    let verifier = PkceCodeVerifier::new(format!(
        "verifier-for-{user}-0123456789abcdefghijklmnopqrstuvwxyz"
    ));
    let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
    let mut request = client
        .authorize_url(|| CsrfToken::new(format!("state-{user}")))
        .set_pkce_challenge(challenge)
        .add_extra_param("login_hint", user)
        .add_extra_param("response_mode", "query");
    for scope in scopes {
        request = request.add_scope(Scope::new((*scope).into()));
    }
    let (url, _) = request.url();
    net.get(url.as_str()).await
}

async fn connect(net: &Net<'_>, client: &Client, user: &str) -> Connect {
    let scopes = [
        "openid",
        "profile",
        "offline_access",
        GRAPH_SEND,
        GRAPH_READ,
        SMTP_SEND,
    ];
    connect_with(net, client, user, &scopes).await
}

/// The user signs in and consents to `scopes`: the code, its verifier and the state.
async fn connect_with(net: &Net<'_>, client: &Client, user: &str, scopes: &[&str]) -> Connect {
    let answer = authorize(net, client, user, scopes).await;
    assert_eq!(answer.status, 302, "{}", answer.body);
    assert!(answer.location.as_ref().unwrap().starts_with(REDIRECT));
    assert!(answer.param("session_state").is_some());
    Connect {
        code: answer.param("code").expect("a code"),
        verifier: PkceCodeVerifier::new(format!(
            "verifier-for-{user}-0123456789abcdefghijklmnopqrstuvwxyz"
        )),
        state: answer.param("state"),
    }
}

/// A refused token request as the oauth2 crate reports it: its `error` and description.
type Refused = (BasicErrorResponseType, String);

fn outcome<E: std::error::Error + 'static>(
    result: Result<BasicTokenResponse, RequestTokenError<E, oauth2::basic::BasicErrorResponse>>,
) -> Result<BasicTokenResponse, Refused> {
    match result {
        Ok(token) => Ok(token),
        Err(RequestTokenError::ServerResponse(e)) => Err((
            e.error().clone(),
            e.error_description().cloned().unwrap_or_default(),
        )),
        Err(other) => panic!("expected a token or an error response, got {other:?}"),
    }
}

async fn redeem(
    net: &Net<'_>,
    client: &Client,
    connect: Connect,
) -> Result<BasicTokenResponse, Refused> {
    let request = client
        .exchange_code(AuthorizationCode::new(connect.code))
        .set_pkce_verifier(connect.verifier);
    match net {
        Net::Memory(memory) => {
            let send = |r| memory.send(r);
            outcome(request.request_async(&send).await)
        }
        Net::Socket(reqwest) => outcome(request.request_async(*reqwest).await),
    }
}

async fn refresh(
    net: &Net<'_>,
    client: &Client,
    token: &str,
    scope: &str,
) -> Result<BasicTokenResponse, Refused> {
    let token = RefreshToken::new(token.into());
    let request = client
        .exchange_refresh_token(&token)
        .add_scope(Scope::new(scope.into()))
        .add_scope(Scope::new("offline_access".into()));
    match net {
        Net::Memory(memory) => {
            let send = |r| memory.send(r);
            outcome(request.request_async(&send).await)
        }
        Net::Socket(reqwest) => outcome(request.request_async(*reqwest).await),
    }
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The whole flow for one user, checked as a multi-tenant client would.
async fn connect_and_refresh(net: &Net<'_>, base: &str) {
    let client = client(base, "common", SECRET);
    let connection = connect(net, &client, ALICE).await;
    assert_eq!(
        connection.state.as_deref(),
        Some(format!("state-{ALICE}").as_str())
    );
    let token = redeem(net, &client, connection).await.unwrap();
    let lifetime = token.expires_in().unwrap().as_secs();
    assert!((3600..=5400).contains(&lifetime), "{lifetime}");
    let access = claims(token.access_token().secret());
    assert_eq!(access["aud"], "https://graph.microsoft.com");
    assert_eq!(access["tid"], FABRIKAM);
    assert_eq!(access["upn"], ALICE);
    check_raw_redemption(net, base, &client).await;
    let first = token.refresh_token().unwrap().secret().clone();
    let smtp = refresh(net, &client, &first, SMTP_SEND).await.unwrap();
    assert_eq!(
        claims(smtp.access_token().secret())["aud"],
        "https://outlook.office365.com"
    );
    let second = smtp.refresh_token().unwrap().secret().clone();
    assert_ne!(first, second, "every redemption rotates the refresh token");
    // The old refresh token is not revoked by the rotation (wire reference §8.3, R15).
    refresh(net, &client, &first, GRAPH_SEND).await.unwrap();
    refresh(net, &client, &second, GRAPH_SEND).await.unwrap();
}

/// A code redeemed as MSAL does it (secret in the body, `client_info=1`): the body's keys in
/// Entra's order and the ID token's claims.
async fn check_raw_redemption(net: &Net<'_>, base: &str, client: &Client) {
    let connection = connect(net, client, BOB).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", demo::APP_ID),
        ("client_secret", SECRET),
        ("code", connection.code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", connection.verifier.secret().as_str()),
        (
            "scope",
            "openid profile offline_access https://graph.microsoft.com/Mail.Send",
        ),
        ("client_info", "1"),
    ];
    let answer = net
        .post_form(&format!("{base}/common/oauth2/v2.0/token"), &form)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "token_type",
            "scope",
            "expires_in",
            "ext_expires_in",
            "access_token",
            "refresh_token",
            "id_token",
            "client_info"
        ]
    );
    let id = verified_id_token(net, base, body["id_token"].as_str().unwrap()).await;
    assert_eq!(id["tid"], FABRIKAM);
    assert_eq!(id["oid"], "bbbbbbbb-0000-4000-8000-000000000002");
    assert_eq!(id["preferred_username"], BOB);
    assert_eq!(id["aud"], demo::APP_ID);
    assert_eq!(
        id["iss"],
        format!("{base}/{FABRIKAM}/v2.0"),
        "the issuer of the authority the client reached"
    );
    let info = URL_SAFE_NO_PAD
        .decode(body["client_info"].as_str().unwrap())
        .unwrap();
    let info: Value = serde_json::from_slice(&info).unwrap();
    assert_eq!(info["utid"], FABRIKAM);
}

/// The claims of an ID token whose RS256 signature verifies against the key the mock publishes
/// at the `jwks_uri` of its discovery document, found by the header's `kid`, as OIDC
/// middleware validates it.
async fn verified_id_token(net: &Net<'_>, base: &str, jwt: &str) -> Value {
    let discovery = net
        .get(&format!(
            "{base}/{FABRIKAM}/v2.0/.well-known/openid-configuration"
        ))
        .await
        .json();
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap();
    assert_eq!(jwks_uri, format!("{base}/{FABRIKAM}/discovery/v2.0/keys"));
    let keys = net.get(jwks_uri).await;
    assert_eq!(keys.status, 200, "{}", keys.body);
    let common = net.get(&format!("{base}/common/discovery/v2.0/keys")).await;
    assert_eq!(
        common.json()["keys"][0]["issuer"],
        format!("{base}/{{tenantid}}/v2.0")
    );
    let (input, signature) = jwt.rsplit_once('.').unwrap();
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(input.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RS256");
    let keys = keys.json();
    let key = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the ID token's kid is published");
    let field: Vec<&str> = key
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        field,
        ["kty", "use", "kid", "x5t", "n", "e", "x5c", "issuer"]
    );
    assert_eq!((&key["kty"], &key["use"]), (&"RSA".into(), &"sig".into()));
    assert_eq!(key["issuer"], format!("{base}/{FABRIKAM}/v2.0"));
    let public = ring::signature::RsaPublicKeyComponents {
        n: URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap(),
        e: URL_SAFE_NO_PAD.decode(key["e"].as_str().unwrap()).unwrap(),
    };
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let rs256 = &ring::signature::RSA_PKCS1_2048_8192_SHA256;
    public
        .verify(rs256, input.as_bytes(), &signature)
        .expect("the ID token verifies against the published key");
    let mut tampered = input.to_string();
    tampered.push('A');
    assert!(
        public
            .verify(rs256, tampered.as_bytes(), &signature)
            .is_err()
    );
    claims(jwt)
}

#[test]
fn authorization_code_with_pkce_and_rotating_refresh_over_oauth2_in_memory() {
    replay_runtime().unwrap().block_on(async {
        let sim = memory_sim(at("2026-01-01T00:00:00Z"));
        let net = Net::Memory(sim.net().unwrap());
        connect_and_refresh(&net, LOGIN).await;
        // Codes and refresh tokens never reach the journal.
        let journal = format!("{:?}", sim.journal().entries());
        assert!(
            !journal.contains("1.AQ"),
            "a code or refresh token in the journal"
        );
    });
}

#[tokio::test]
async fn authorization_code_with_pkce_and_rotating_refresh_over_oauth2_on_sockets() {
    let mut builder = Sim::builder()
        .start(at("2025-02-14T09:00:00Z"))
        .seed(Seed(14));
    for tenant in tenants(at("2026-01-01T00:00:00Z")) {
        builder = builder.tenant(tenant);
    }
    let sim = builder
        .sockets(SocketOptions::default())
        .build()
        .await
        .unwrap();
    let reqwest = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    connect_and_refresh(&Net::Socket(&reqwest), sim.socket_base().unwrap()).await;
}

/// The catalogue entry of `key` in `fixtures/wire/entra.toml`.
fn entry(key: &str) -> toml::Value {
    let file: toml::Value = toml::from_str(include_str!("../fixtures/wire/entra.toml")).unwrap();
    file["errors"][key].clone()
}

/// Asserts a token endpoint reply is the catalogue's `key`: status, `error`, `error_codes`,
/// `suberror` (after `error_uri`), and the description up to its first variable.
fn assert_catalogue(answer: &Answer, key: &str) {
    let entry = entry(key);
    assert_eq!(
        i64::from(answer.status),
        entry["status"].as_integer().unwrap(),
        "{key}: {}",
        answer.body
    );
    let body = answer.json();
    assert_eq!(body["error"], entry["error"].as_str().unwrap(), "{key}");
    assert_eq!(
        body["error_codes"][0],
        entry["code"].as_integer().unwrap(),
        "{key}"
    );
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    match entry.get("suberror").and_then(|s| s.as_str()) {
        Some(suberror) => {
            assert_eq!(body["suberror"], suberror, "{key}");
            assert_eq!(
                keys.last(),
                Some(&"suberror"),
                "{key}: suberror after error_uri"
            );
        }
        None => assert!(body.get("suberror").is_none(), "{key}"),
    }
    let description = entry["description"].as_str().unwrap();
    let head = description.split("${").next().unwrap();
    let got = body["error_description"].as_str().unwrap();
    assert!(got.starts_with(head), "{key}: {got}");
    assert!(got.contains(" Trace ID: "), "{key}: {got}");
}

/// A refresh posted as MSAL posts it.
async fn raw_refresh(net: &Net<'_>, token: &str, secret: &str) -> Answer {
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", demo::APP_ID),
        ("client_secret", secret),
        ("refresh_token", token),
        (
            "scope",
            "openid profile offline_access https://graph.microsoft.com/Mail.Send",
        ),
    ];
    net.post_form(&format!("{LOGIN}/common/oauth2/v2.0/token"), &form)
        .await
}

async fn connected(net: &Net<'_>, user: &str) -> String {
    let client = client(LOGIN, "common", SECRET);
    let connection = connect(net, &client, user).await;
    let token = redeem(net, &client, connection).await.unwrap();
    token.refresh_token().unwrap().secret().clone()
}

#[test]
fn user_and_tenant_events_refuse_refresh_with_the_catalogue_bodies() {
    replay_runtime().unwrap().block_on(async {
        let sim = memory_sim(at("2026-01-01T00:00:00Z"));
        let net = Net::Memory(sim.net().unwrap());
        let alice = connected(&net, ALICE).await;
        let bob = connected(&net, BOB).await;
        let carol = connected(&net, CAROL).await;
        // Events after the sign-ins: a grant made at the very instant of a revocation stands.
        sim.clock().sleep(Duration::from_secs(1)).await;
        let now = sim.clock().now_utc();
        let event = |tenant: &str, user: &str, event: UserEvent| {
            assert!(Directory::lock(sim.directory()).user_event(tenant, user, event, now));
        };
        event(FABRIKAM, ALICE, UserEvent::ResetPassword);
        assert_catalogue(&raw_refresh(&net, &alice, SECRET).await, "grant_revoked");
        assert_eq!(
            raw_refresh(&net, &bob, SECRET).await.status,
            200,
            "bob is not affected"
        );
        event(NORTHWIND, CAROL, UserEvent::RequireMfa);
        assert_catalogue(&raw_refresh(&net, &carol, SECRET).await, "mfa_required");
        event(NORTHWIND, CAROL, UserEvent::BlockByConditionalAccess);
        assert_catalogue(
            &raw_refresh(&net, &carol, SECRET).await,
            "conditional_access",
        );
        // Signing in again does not lift a Conditional Access block (it does satisfy MFA).
        let common = client(LOGIN, "common", SECRET);
        let again = connect(&net, &common, CAROL).await;
        assert!(redeem(&net, &common, again).await.is_err());
        let bob = connected(&net, BOB).await;
        event(FABRIKAM, BOB, UserEvent::IdleRefreshTokens);
        assert_catalogue(
            &raw_refresh(&net, &bob, SECRET).await,
            "refresh_token_inactive",
        );
        let bob = connected(&net, BOB).await;
        assert!(Directory::lock(sim.directory()).set_app_enabled(FABRIKAM, demo::APP_ID, false));
        assert_catalogue(&raw_refresh(&net, &bob, SECRET).await, "app_disabled");
        assert!(Directory::lock(sim.directory()).set_app_enabled(FABRIKAM, demo::APP_ID, true));
        assert_eq!(raw_refresh(&net, &bob, SECRET).await.status, 200);
        assert!(Directory::lock(sim.directory()).withdraw_consent(FABRIKAM, demo::APP_ID));
        assert_catalogue(&raw_refresh(&net, &bob, SECRET).await, "consent_required");
        assert!(Directory::lock(sim.directory()).remove_service_principal(FABRIKAM, demo::APP_ID));
        let gone = raw_refresh(&net, &bob, SECRET).await;
        assert_catalogue(&gone, "unknown_app");
        assert!(
            gone.json()["error_description"]
                .as_str()
                .unwrap()
                .contains("fabrikam.onmicrosoft.com")
        );
        assert_catalogue(
            &raw_refresh(&net, "1.AQnot-a-token", SECRET).await,
            "invalid_refresh_token",
        );
    });
}

/// A user event at the sim's current instant.
fn user_event(sim: &Sim, tenant: &str, user: &str, event: UserEvent) {
    let now = sim.clock().now_utc();
    assert!(Directory::lock(sim.directory()).user_event(tenant, user, event, now));
}

#[test]
fn a_disabled_user_is_refused_50057_at_sign_in_and_refresh_until_enabled() {
    replay_runtime().unwrap().block_on(async {
        let sim = memory_sim(at("2026-01-01T00:00:00Z"));
        let net = Net::Memory(sim.net().unwrap());
        let alice = connected(&net, ALICE).await;
        user_event(&sim, FABRIKAM, ALICE, UserEvent::DisableUser);
        assert_catalogue(&raw_refresh(&net, &alice, SECRET).await, "user_disabled");
        let common = client(LOGIN, "common", SECRET);
        let page = authorize(&net, &common, ALICE, &["openid", GRAPH_SEND]).await;
        assert_eq!(page.status, 400);
        assert!(page.location.is_none(), "shown on the sign-in page");
        assert!(
            page.body
                .contains("AADSTS50057: The user account is disabled.")
        );
        assert_eq!(
            raw_refresh(&net, &connected(&net, BOB).await, SECRET)
                .await
                .status,
            200
        );
        user_event(&sim, FABRIKAM, ALICE, UserEvent::EnableUser);
        assert_eq!(raw_refresh(&net, &alice, SECRET).await.status, 200);
    });
}

#[test]
fn mfa_expiry_and_enrollment_refuse_50078_and_50079_until_the_user_signs_in_again() {
    replay_runtime().unwrap().block_on(async {
        let sim = memory_sim(at("2026-01-01T00:00:00Z"));
        let net = Net::Memory(sim.net().unwrap());
        let bob = connected(&net, BOB).await;
        let carol = connected(&net, CAROL).await;
        sim.clock().sleep(Duration::from_secs(1)).await;
        user_event(&sim, FABRIKAM, BOB, UserEvent::ExpireMfa);
        user_event(&sim, NORTHWIND, CAROL, UserEvent::RequireMfaEnrollment);
        assert_catalogue(&raw_refresh(&net, &bob, SECRET).await, "mfa_expired");
        assert_catalogue(&raw_refresh(&net, &carol, SECRET).await, "mfa_enrollment");
        let described = raw_refresh(&net, &bob, SECRET).await.json();
        let graph = "00000003-0000-0000-c000-000000000000";
        assert!(
            described["error_description"]
                .as_str()
                .unwrap()
                .contains(graph)
        );
        sim.clock().sleep(Duration::from_secs(1)).await;
        let again = connected(&net, BOB).await;
        assert_eq!(raw_refresh(&net, &again, SECRET).await.status, 200);
    });
}

#[test]
fn a_sign_in_frequency_refuses_70043_once_the_sign_in_is_an_hour_old() {
    replay_runtime().unwrap().block_on(async {
        let sim = memory_sim(at("2026-01-01T00:00:00Z"));
        let net = Net::Memory(sim.net().unwrap());
        let bob = connected(&net, BOB).await;
        user_event(&sim, FABRIKAM, BOB, UserEvent::EnforceSignInFrequency);
        assert_eq!(raw_refresh(&net, &bob, SECRET).await.status, 200, "within the hour");
        sim.clock().sleep(Duration::from_secs(3601)).await;
        let lapsed = raw_refresh(&net, &bob, SECRET).await;
        assert_catalogue(&lapsed, "sign_in_frequency");
        let description = lapsed.json()["error_description"].as_str().unwrap().to_string();
        assert!(
            description.contains("The token was issued on 2025-02-14T09:00:00.0000000Z and the maximum allowed lifetime for this request is 3600. Trace ID: "),
            "{description}"
        );
        let again = connected(&net, BOB).await;
        assert_eq!(raw_refresh(&net, &again, SECRET).await.status, 200);
    });
}

#[test]
fn a_code_redeemed_at_another_tenant_is_refused_700005() {
    replay_runtime().unwrap().block_on(async {
        let sim = memory_sim(at("2026-01-01T00:00:00Z"));
        let net = Net::Memory(sim.net().unwrap());
        let common = client(LOGIN, "common", SECRET);
        for (authority, status) in [(NORTHWIND, 400), (FABRIKAM, 200)] {
            let c = connect(&net, &common, ALICE).await;
            let form = [
                ("grant_type", "authorization_code"),
                ("client_id", demo::APP_ID),
                ("client_secret", SECRET),
                ("code", c.code.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", c.verifier.secret().as_str()),
            ];
            let url = format!("{LOGIN}/{authority}/oauth2/v2.0/token");
            let answer = net.post_form(&url, &form).await;
            assert_eq!(answer.status, status, "{authority}: {}", answer.body);
            if status == 400 {
                assert_catalogue(&answer, "code_other_tenant");
            }
        }
    });
}

#[test]
fn a_code_is_single_use_checks_pkce_and_redirect_uri_and_expires_after_ten_minutes() {
    replay_runtime().unwrap().block_on(async {
        let sim = memory_sim(at("2026-01-01T00:00:00Z"));
        let net = Net::Memory(sim.net().unwrap());
        let client = client(LOGIN, "common", SECRET);
        let url = format!("{LOGIN}/common/oauth2/v2.0/token");
        let redeem_raw = |code: String, verifier: String, redirect: &'static str| {
            let net = &net;
            let url = url.clone();
            async move {
                let form = [
                    ("grant_type", "authorization_code"),
                    ("client_id", demo::APP_ID),
                    ("client_secret", SECRET),
                    ("code", code.as_str()),
                    ("redirect_uri", redirect),
                    ("code_verifier", verifier.as_str()),
                ];
                net.post_form(&url, &form).await
            }
        };
        let c = connect(&net, &client, ALICE).await;
        let verifier = c.verifier.secret().clone();
        let wrong = redeem_raw(c.code.clone(), "not-the-verifier".into(), REDIRECT).await;
        assert_catalogue(&wrong, "pkce_mismatch");
        let elsewhere = redeem_raw(
            c.code.clone(),
            verifier.clone(),
            "https://crm.example/other",
        )
        .await;
        assert_catalogue(&elsewhere, "redirect_mismatch");
        assert_eq!(
            redeem_raw(c.code.clone(), verifier.clone(), REDIRECT)
                .await
                .status,
            200
        );
        let again = redeem_raw(c.code.clone(), verifier.clone(), REDIRECT).await;
        assert_catalogue(&again, "code_redeemed");
        let late = connect(&net, &client, ALICE).await;
        sim.clock().sleep(Duration::from_secs(600)).await;
        let expired = redeem_raw(late.code, late.verifier.secret().clone(), REDIRECT).await;
        assert_catalogue(&expired, "code_expired");
        let unknown = redeem_raw("1.AQnope".into(), verifier, REDIRECT).await;
        assert_catalogue(&unknown, "invalid_code");
    });
}

#[test]
fn an_expired_secret_fails_every_users_refresh_with_7000222_until_a_new_secret_is_in_place() {
    replay_runtime().unwrap().block_on(async {
        let sim = memory_sim(at("2025-02-14T11:30:00Z"));
        let net = Net::Memory(sim.net().unwrap());
        let mut tokens = Vec::new();
        for user in [ALICE, BOB, CAROL] {
            tokens.push(connected(&net, user).await);
        }
        sim.clock().sleep(Duration::from_secs(3 * 3600)).await;
        let old = client(LOGIN, "common", SECRET);
        for token in &tokens {
            let (error, description) = refresh(&net, &old, token, GRAPH_SEND).await.unwrap_err();
            assert_eq!(error, BasicErrorResponseType::InvalidClient);
            assert!(description.starts_with("AADSTS7000222: "), "{description}");
            assert_catalogue(&raw_refresh(&net, token, SECRET).await, "expired_secret");
        }
        // The authorize leg needs no secret: reconnecting gets a code, then fails at redemption.
        let reconnect = connect(&net, &old, ALICE).await;
        let (error, _) = redeem(&net, &old, reconnect).await.unwrap_err();
        assert_eq!(error, BasicErrorResponseType::InvalidClient);
        let now = sim.clock().now_utc();
        let new_secret = "Nw8Q~rotated-secret-value-0000000000000000";
        let spec = SecretSpec {
            value: new_secret.into(),
            display_name: "rotated".into(),
            start: now,
            end: now + chrono::TimeDelta::days(365),
        };
        Directory::lock(sim.directory())
            .add_secret(demo::TENANT_ID, demo::APP_ID, &spec, now)
            .unwrap();
        sim.clock().sleep(Duration::from_secs(10)).await;
        let rotated = client(LOGIN, "common", new_secret);
        for token in &tokens {
            let fresh = refresh(&net, &rotated, token, GRAPH_SEND).await.unwrap();
            assert!(fresh.refresh_token().is_some());
        }
    });
}

#[test]
fn authorize_refusals_are_a_page_or_a_redirect_as_entra_gives_them() {
    replay_runtime().unwrap().block_on(async {
        let sim = memory_sim(at("2026-01-01T00:00:00Z"));
        let net = Net::Memory(sim.net().unwrap());
        let scopes = ["offline_access", GRAPH_SEND];
        let mut stray = client(LOGIN, "common", SECRET);
        stray = stray.set_redirect_uri(RedirectUrl::new("https://evil.example/cb".into()).unwrap());
        let page = authorize(&net, &stray, ALICE, &scopes).await;
        assert_eq!(page.status, 400);
        assert!(
            page.location.is_none(),
            "never redirected to an unregistered URI"
        );
        assert!(
            page.body
                .contains("AADSTS50011: The redirect URI 'https://evil.example/cb'")
        );
        // What the page echoes from the query is text, never markup.
        let injected = net
            .get(&format!(
                "{LOGIN}/common/oauth2/v2.0/authorize?client_id={}&response_type=code&scope=openid&redirect_uri=https%3A%2F%2Fevil.example%2F%3Cscript%3Ealert(1)%3C%2Fscript%3E",
                demo::APP_ID
            ))
            .await;
        assert_eq!(injected.status, 400);
        assert!(!injected.body.contains("<script>"), "{}", injected.body);
        assert!(injected.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        let at_fabrikam = client(LOGIN, FABRIKAM, SECRET);
        let foreign = authorize(&net, &at_fabrikam, CAROL, &scopes).await;
        assert_eq!(foreign.status, 302);
        assert_eq!(foreign.param("error").as_deref(), Some("access_denied"));
        assert!(
            foreign
                .param("error_description")
                .unwrap()
                .starts_with("AADSTS50020: ")
        );
        assert_eq!(foreign.param("state"), Some(format!("state-{CAROL}")));
        let common = client(LOGIN, "common", SECRET);
        let blocked = authorize(&net, &common, DAVE, &scopes).await;
        assert_eq!(blocked.param("error").as_deref(), Some("access_denied"));
        assert_eq!(blocked.param("error_subcode").as_deref(), Some("cancel"));
        assert!(blocked.param("code").is_none() && blocked.param("error_description").is_none());
        assert!(Directory::lock(sim.directory()).set_app_enabled(NORTHWIND, demo::APP_ID, false));
        let disabled = authorize(&net, &common, CAROL, &scopes).await;
        assert_eq!(disabled.status, 400);
        assert!(disabled.body.contains("AADSTS7000112: Application"));
        let unknown = authorize(&net, &common, "nobody@fabrikam.onmicrosoft.com", &scopes).await;
        assert!(unknown.body.contains("AADSTS50034"));
    });
}

impl Answer {
    /// The redirect's query parameter names, in order.
    fn param_names(&self) -> Vec<String> {
        let query = self.location.as_ref().unwrap().split_once('?').unwrap().1;
        form_urlencoded::parse(query.as_bytes())
            .map(|(k, _)| k.into_owned())
            .collect()
    }
}

/// An admin-consent request (v2 or legacy) with `login_hint` acting as the admin.
fn consent(authority: &str, v2: bool, hint: &str, scope: &str) -> String {
    let path = if v2 {
        "v2.0/adminconsent"
    } else {
        "adminconsent"
    };
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.extend_pairs([
        ("client_id", demo::APP_ID),
        ("redirect_uri", REDIRECT),
        ("state", "admin-state"),
        ("login_hint", hint),
    ]);
    if !scope.is_empty() {
        query.append_pair("scope", scope);
    }
    format!("{LOGIN}/{authority}/{path}?{}", query.finish())
}

#[test]
fn admin_consent_consents_for_the_whole_tenant_and_redirects_as_documented() {
    replay_runtime().unwrap().block_on(async {
        let sim = memory_sim(at("2026-01-01T00:00:00Z"));
        let net = Net::Memory(sim.net().unwrap());
        let common = client(LOGIN, "common", SECRET);
        let scopes = ["offline_access", GRAPH_SEND];
        let blocked = authorize(&net, &common, DAVE, &scopes).await;
        assert_eq!(blocked.param("error").as_deref(), Some("access_denied"));
        let default = "https://graph.microsoft.com/.default";
        let granted = net.get(&consent(LOCKED, true, DAVE, default)).await;
        assert_eq!(granted.status, 302, "{}", granted.body);
        assert!(granted.location.as_ref().unwrap().starts_with(REDIRECT));
        assert_eq!(
            granted.param_names(),
            ["admin_consent", "tenant", "scope", "state"]
        );
        assert_eq!(granted.param("admin_consent").as_deref(), Some("True"));
        assert_eq!(granted.param("tenant").as_deref(), Some(LOCKED));
        assert_eq!(granted.param("scope").as_deref(), Some(default));
        // The admin consented for everyone: Dave now connects without a prompt.
        let dave = connect_with(&net, &common, DAVE, &scopes).await;
        assert!(redeem(&net, &common, dave).await.is_ok());
        let legacy = net.get(&consent("common", false, DAVE, "")).await;
        assert_eq!(legacy.param_names(), ["tenant", "state", "admin_consent"]);
        assert_eq!(legacy.param("tenant").as_deref(), Some(LOCKED));
        let on_common = net.get(&consent("common", true, DAVE, default)).await;
        assert_eq!(on_common.status, 400);
        assert!(on_common.location.is_none());
        assert!(
            on_common.body.contains("AADSTS900023: "),
            "{}",
            on_common.body
        );
        let foreign = net.get(&consent(FABRIKAM, true, CAROL, default)).await;
        assert_eq!(foreign.param("error").as_deref(), Some("access_denied"));
        assert!(
            foreign
                .param("error_description")
                .unwrap()
                .starts_with("AADSTS50020: ")
        );
        assert_eq!(
            foreign.param_names(),
            [
                "error",
                "error_description",
                "error_uri",
                "admin_consent",
                "state"
            ],
            "no tenant on a refusal (R14)"
        );
        let unknown = net
            .get(&consent(
                FABRIKAM,
                true,
                ALICE,
                "https://contoso.example/.default",
            ))
            .await;
        assert_eq!(unknown.param("error").as_deref(), Some("invalid_resource"));
    });
}

#[test]
fn authorize_redirects_invalid_resource_for_a_scope_of_an_unknown_resource() {
    replay_runtime().unwrap().block_on(async {
        let sim = memory_sim(at("2026-01-01T00:00:00Z"));
        let net = Net::Memory(sim.net().unwrap());
        let common = client(LOGIN, "common", SECRET);
        let scopes = ["openid", "https://contoso.example/Files.Read"];
        let refused = authorize(&net, &common, ALICE, &scopes).await;
        assert_eq!(refused.status, 302);
        assert_eq!(refused.param("error").as_deref(), Some("invalid_resource"));
        let description = refused.param("error_description").unwrap();
        assert!(
            description.starts_with(
                "AADSTS500011: The resource principal named https://contoso.example was not found"
            ),
            "{description}"
        );
        assert_eq!(refused.param("state"), Some(format!("state-{ALICE}")));
        assert!(refused.param("code").is_none());
    });
}

/// The parameters of a redirect's fragment, in order.
fn fragment(answer: &Answer) -> Vec<(String, String)> {
    let location = answer.location.as_ref().expect("a redirect");
    let fragment = location.split_once('#').expect("a fragment").1;
    form_urlencoded::parse(fragment.as_bytes())
        .into_owned()
        .collect()
}

#[test]
fn the_hybrid_flow_answers_code_and_a_verifiable_id_token_in_the_fragment() {
    replay_runtime().unwrap().block_on(async {
        let sim = memory_sim(at("2026-01-01T00:00:00Z"));
        let net = Net::Memory(sim.net().unwrap());
        let url = |response_type: &str, nonce: Option<&str>| {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.extend_pairs([
                ("client_id", demo::APP_ID),
                ("response_type", response_type),
                ("redirect_uri", REDIRECT),
                (
                    "scope",
                    "openid profile offline_access https://graph.microsoft.com/Mail.Send",
                ),
                ("state", "hybrid-state"),
                ("login_hint", ALICE),
                ("response_mode", "query"),
            ]);
            if let Some(nonce) = nonce {
                query.append_pair("nonce", nonce);
            }
            format!("{LOGIN}/common/oauth2/v2.0/authorize?{}", query.finish())
        };
        let answer = net.get(&url("code id_token", Some("n-0451"))).await;
        assert_eq!(answer.status, 302, "{}", answer.body);
        let params = fragment(&answer);
        let names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["code", "id_token", "state", "session_state"]);
        let (code, id_token) = (&params[0].1, &params[1].1);
        let id = verified_id_token(&net, LOGIN, id_token).await;
        assert_eq!(id["nonce"], "n-0451");
        assert_eq!(id["preferred_username"], ALICE);
        let digest = <sha2::Sha256 as sha2::Digest>::digest(code.as_bytes());
        assert_eq!(id["c_hash"], URL_SAFE_NO_PAD.encode(&digest[..16]));
        let form = [
            ("grant_type", "authorization_code"),
            ("client_id", demo::APP_ID),
            ("client_secret", SECRET),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
        ];
        let url_token = format!("{LOGIN}/common/oauth2/v2.0/token");
        assert_eq!(net.post_form(&url_token, &form).await.status, 200);
        let no_nonce = fragment(&net.get(&url("id_token code", None)).await);
        assert_eq!(no_nonce[0], ("error".into(), "invalid_request".into()));
        let implicit = net.get(&url("id_token token", Some("n"))).await;
        assert_eq!(
            implicit.param("error").as_deref(),
            Some("unsupported_response_type")
        );
    });
}

/// Alice's delegated tokens for Graph and for SMTP, from one refresh token.
async fn alice_tokens(net: &Net<'_>) -> (String, String) {
    let client = client(LOGIN, "common", SECRET);
    let connection = connect(net, &client, ALICE).await;
    let graph = redeem(net, &client, connection).await.unwrap();
    let refresh_token = graph.refresh_token().unwrap().secret().clone();
    let smtp = refresh(net, &client, &refresh_token, SMTP_SEND)
        .await
        .unwrap();
    (
        graph.access_token().secret().clone(),
        smtp.access_token().secret().clone(),
    )
}

fn graph_request(method: &str, path: &str, bearer: &str, body: &str) -> http::Request<Vec<u8>> {
    http::Request::builder()
        .method(method)
        .uri(format!("https://graph.microsoft.com/v1.0{path}"))
        .header("authorization", format!("Bearer {bearer}"))
        .header("content-type", "application/json")
        .body(body.as_bytes().to_vec())
        .unwrap()
}

fn mail(from: Option<&str>) -> String {
    let from = from.map_or(String::new(), |f| {
        format!(r#","from":{{"emailAddress":{{"address":"{f}"}}}}"#)
    });
    format!(
        r#"{{"message":{{"subject":"hi","internetMessageId":"<d1@crm.example>","toRecipients":[{{"emailAddress":{{"address":"x@example.com"}}}}]{from}}}}}"#
    )
}

#[test]
fn graph_me_serves_the_signed_in_user_and_no_other_mailbox() {
    replay_runtime().unwrap().block_on(async {
        let sim = memory_sim(at("2026-01-01T00:00:00Z"));
        let net = Net::Memory(sim.net().unwrap());
        let (graph, _) = alice_tokens(&net).await;
        let sent = net
            .answer(graph_request("POST", "/me/sendMail", &graph, &mail(None)))
            .await;
        assert_eq!(sent.status, 202, "{}", sent.body);
        let mailbox = Directory::lock(sim.directory())
            .mailbox(FABRIKAM, ALICE)
            .unwrap()
            .sent()
            .len();
        assert_eq!(mailbox, 1);
        let own = format!("/users/{ALICE}/sendMail");
        assert_eq!(
            net.answer(graph_request("POST", &own, &graph, &mail(None)))
                .await
                .status,
            202
        );
        let other = format!("/users/{BOB}/sendMail");
        let denied = net
            .answer(graph_request("POST", &other, &graph, &mail(None)))
            .await;
        assert_eq!(
            (denied.status, denied.json()["error"]["code"].clone()),
            (403, "ErrorAccessDenied".into())
        );
        let send_as = net
            .answer(graph_request(
                "POST",
                "/me/sendMail",
                &graph,
                &mail(Some(BOB)),
            ))
            .await;
        assert_eq!(send_as.status, 403);
        assert_eq!(send_as.json()["error"]["code"], "ErrorSendAsDenied");
        let app = Directory::lock(sim.directory())
            .issue_token(
                demo::TENANT_ID,
                demo::APP_ID,
                maildrill::tenant::Resource::Graph,
                sim.clock().now_utc(),
            )
            .unwrap();
        let me = net
            .answer(graph_request(
                "POST",
                "/me/sendMail",
                &app.value,
                &mail(None),
            ))
            .await;
        assert_eq!(
            (me.status, me.json()["error"]["code"].clone()),
            (400, "BadRequest".into())
        );
    });
}

/// One SMTP reply (up to its `NNN ` line).
async fn smtp_reply(stream: &mut tokio::io::DuplexStream) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut text = String::new();
    let mut byte = [0u8; 1];
    loop {
        stream.read_exact(&mut byte).await.unwrap();
        text.push(byte[0] as char);
        if text.ends_with("\r\n") {
            let line = text.trim_end().rsplit("\r\n").next().unwrap().to_string();
            if line.len() >= 4 && line.as_bytes()[3] == b' ' {
                return line;
            }
        }
    }
}

async fn smtp_login(sim: &Sim, user: &str, token: &str) -> String {
    use tokio::io::AsyncWriteExt as _;
    let server = maildrill::mock::smtp::SmtpServer::new(
        sim.directory().clone(),
        sim.clock().clone(),
        maildrill::journal::Journal::new(),
        maildrill::mock::smtp::SmtpConfig::default(),
    );
    let mut stream = maildrill::wiring::memory::MemorySmtp::new(server).connect();
    smtp_reply(&mut stream).await;
    stream.write_all(b"EHLO crm.example\r\n").await.unwrap();
    smtp_reply(&mut stream).await;
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"));
    stream
        .write_all(format!("AUTH XOAUTH2 {auth}\r\n").as_bytes())
        .await
        .unwrap();
    smtp_reply(&mut stream).await
}

#[test]
fn graph_me_delta_pages_the_signed_in_users_inbox() {
    replay_runtime().unwrap().block_on(async {
        let sim = memory_sim(at("2026-01-01T00:00:00Z"));
        let net = Net::Memory(sim.net().unwrap());
        let (graph, _) = alice_tokens(&net).await;
        let delta = net
            .answer(graph_request(
                "GET",
                "/me/mailFolders/inbox/messages/delta",
                &graph,
                "",
            ))
            .await;
        assert_eq!(delta.status, 200, "{}", delta.body);
        let link = delta.json()["@odata.deltaLink"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            link.contains("/v1.0/me/mailFolders/inbox/messages/delta"),
            "{link}"
        );
        let bob = format!("/users/{BOB}/mailFolders/inbox/messages/delta");
        let denied = net.answer(graph_request("GET", &bob, &graph, "")).await;
        assert_eq!(denied.status, 403);
    });
}

#[test]
fn smtp_takes_a_delegated_token_for_its_own_users_mailbox_only() {
    replay_runtime().unwrap().block_on(async {
        let sim = memory_sim(at("2026-01-01T00:00:00Z"));
        let net = Net::Memory(sim.net().unwrap());
        let (graph, smtp) = alice_tokens(&net).await;
        assert!(smtp_login(&sim, ALICE, &smtp).await.starts_with("235 "));
        let other = smtp_login(&sim, BOB, &smtp).await;
        assert!(other.starts_with("535 5.7.3 "), "{other}");
        let audience = smtp_login(&sim, ALICE, &graph).await;
        assert!(audience.starts_with("535 5.7.3 "), "{audience}");
    });
}

#[test]
fn a_user_gets_no_token_for_a_resource_they_did_not_consent_to() {
    replay_runtime().unwrap().block_on(async {
        let sim = memory_sim(at("2026-01-01T00:00:00Z"));
        let net = Net::Memory(sim.net().unwrap());
        let client = client(LOGIN, "common", SECRET);
        // Alice consents to Graph only (Fabrikam's users consent for themselves).
        let connection = connect_with(&net, &client, ALICE, &["offline_access", GRAPH_SEND]).await;
        let token = redeem(&net, &client, connection).await.unwrap();
        let refresh_token = token.refresh_token().unwrap().secret().clone();
        assert!(
            refresh(&net, &client, &refresh_token, GRAPH_SEND)
                .await
                .is_ok()
        );
        let smtp = refresh(&net, &client, &refresh_token, SMTP_SEND).await;
        let (error, description) = smtp.expect_err("SMTP.Send was never consented to");
        assert_eq!(error, BasicErrorResponseType::InvalidGrant);
        assert!(description.starts_with("AADSTS65001: "), "{description}");
    });
}
