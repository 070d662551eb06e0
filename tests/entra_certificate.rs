//! Certificate credentials end to end: client assertions at the token endpoint (RS256 and
//! PS256, `x5t` and `x5t#S256`) and each of Entra's refusals with its exact text, the app's
//! `keyCredentials` through Graph, and the bundled client's certificate path.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use maildrill::client::certificate::{CertificateSource, ThumbprintHeader};
use maildrill::client::classify::{CredentialProblem, Failure};
use maildrill::client::secret::SecretSource;
use maildrill::client::token::TokenConfig;
use maildrill::tenant::certificate::TEST_KEYS;
use maildrill::tenant::{CertificateSpec, TenantSpec, demo};
use maildrill::time::{ClockExt as _, replay_runtime};
use ring::signature::{RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaEncoding, RsaKeyPair};
use serde_json::{Value, json};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const CERT_START: &str = "2024-02-14T11:30:00Z";
const CERT_END: &str = "2025-02-14T11:30:00Z";

/// The registered certificate: the first test key, a year to 2025-02-14T11:30Z.
fn registered() -> CertificateSpec {
    CertificateSpec::issue(TEST_KEYS[0], "mailman-prod", at(CERT_START), at(CERT_END)).unwrap()
}

/// A certificate the app does not know (another test key).
fn stranger() -> CertificateSpec {
    CertificateSpec::issue(TEST_KEYS[2], "stranger", at(CERT_START), at(CERT_END)).unwrap()
}

/// The demo tenant with its secret and the registered certificate.
fn tenant_with_certificate() -> TenantSpec {
    let mut spec = tenant(at("2026-01-01T00:00:00Z"));
    spec.apps[0].certificates.push(registered());
    spec
}

/// Which thumbprint header an assertion carries.
#[derive(Clone, Copy)]
enum Named {
    Sha1,
    Sha256,
}

/// The signature algorithms an assertion is signed with here.
#[derive(Clone, Copy)]
enum Alg {
    Rs256,
    Ps256,
}

/// An assertion signed with `certificate`'s key, naming it by `named`, with `claims`.
fn assertion(certificate: &CertificateSpec, alg: Alg, named: Named, claims: &Value) -> String {
    let thumbprints = certificate.thumbprints();
    let (name, value) = match named {
        Named::Sha1 => ("x5t", thumbprints.x5t()),
        Named::Sha256 => ("x5t#S256", thumbprints.x5t_s256()),
    };
    let (alg_name, alg): (&str, &'static dyn RsaEncoding) = match alg {
        Alg::Rs256 => ("RS256", &RSA_PKCS1_SHA256),
        Alg::Ps256 => ("PS256", &RSA_PSS_SHA256),
    };
    let header = json!({"alg": alg_name, "typ": "JWT", name: value});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let body: String = certificate
        .key_pem()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let key = RsaKeyPair::from_pkcs8(&STANDARD.decode(body).unwrap()).unwrap();
    let mut signature = vec![0; key.public().modulus_len()];
    let rng = ring::rand::SystemRandom::new();
    key.sign(alg, &rng, input.as_bytes(), &mut signature)
        .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Claims valid at `now` for the demo app at its v2 token endpoint.
fn claims(now: DateTime<Utc>) -> Value {
    json!({
        "aud": format!("https://login.microsoftonline.com/{}/oauth2/v2.0/token", demo::TENANT_ID),
        "iss": demo::APP_ID,
        "sub": demo::APP_ID,
        "jti": "5b3c1f0e-2a4d-4e6f-8a9b-0c1d2e3f4a5b",
        "nbf": now.timestamp(),
        "iat": now.timestamp(),
        "exp": now.timestamp() + 600,
        "x-unknown-claim": "ignored, as Entra ignores it",
    })
}

fn form(assertion: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", demo::APP_ID)
        .append_pair("scope", GRAPH_SCOPE)
        .append_pair("client_assertion_type", JWT_BEARER)
        .append_pair("client_assertion", assertion)
        .append_pair("client_info", "1")
        .finish()
}

/// Status and JSON body of a raw HTTP response.
fn parse(raw: &str) -> (u16, Value) {
    let status = raw[9..12].parse().unwrap();
    let body = raw.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap())
}

/// The token endpoint's answer to `assertion` at `now`.
fn answer(now: &str, assertion: &str) -> (u16, Value) {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(at(now), tenant_with_certificate(), 7);
        parse(&sim.raw_token(&form(assertion)).await)
    })
}

/// Asserts an Entra refusal: status, `error`, code, and the description up to its trace part.
fn assert_refusal(answer: &(u16, Value), status: u16, error: &str, code: u64, text: &str) {
    let (got_status, body) = answer;
    assert_eq!(*got_status, status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let description = body["error_description"].as_str().unwrap();
    let (shown, trace) = description.split_once(" Trace ID: ").unwrap();
    assert_eq!(shown, text);
    assert!(trace.contains(" Correlation ID: ") && trace.contains(" Timestamp: "));
}

const NOW: &str = "2025-01-10T08:00:00Z";

#[test]
fn a_good_assertion_gets_a_token_with_either_header_and_either_algorithm() {
    let cases = [
        (Alg::Rs256, Named::Sha1),
        (Alg::Rs256, Named::Sha256),
        (Alg::Ps256, Named::Sha1),
        (Alg::Ps256, Named::Sha256),
    ];
    for (alg, named) in cases {
        let jwt = assertion(&registered(), alg, named, &claims(at(NOW)));
        let (status, body) = answer(NOW, &jwt);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3599);
    }
}

/// The tail every AADSTS700027 text shares.
fn visit(app: &str) -> String {
    format!(
        "Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{app}'. Review the documentation at https://docs.microsoft.com/en-us/graph/deployments to determine the corresponding service endpoint and https://docs.microsoft.com/en-us/graph/api/application-get?view=graph-rest-1.0&tabs=http to build a query request URL, such as 'https://graph.microsoft.com/beta/applications/{app}']."
    )
}

#[test]
fn an_unregistered_certificate_is_700027_key_not_found_naming_the_thumbprint_sent() {
    let certificate = stranger();
    for (named, thumbprint) in [
        (Named::Sha1, certificate.thumbprints().sha1_hex()),
        (Named::Sha256, upper_hex(&certificate.thumbprints().sha256)),
    ] {
        let jwt = assertion(&certificate, Alg::Rs256, named, &claims(at(NOW)));
        let text = format!(
            "AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}', {} Alternatively, SNI may be configured on the app. Please ensure that client assertion is being sent with the x5c claim in the JWT header using MSAL's WithSendX5C() method so that Azure Active Directory can validate the certificate being used.",
            visit(demo::APP_ID)
        );
        assert_refusal(&answer(NOW, &jwt), 401, "invalid_client", 700027, &text);
    }
}

#[test]
fn a_signature_the_key_does_not_verify_is_700027_key_found_with_its_dates() {
    for named in [Named::Sha1, Named::Sha256] {
        let jwt = assertion(&registered(), Alg::Rs256, named, &claims(at(NOW)));
        // The same header, other claims: the signature no longer fits.
        let mut other = claims(at(NOW));
        other["jti"] = json!("another");
        let (head, _) = jwt.split_once('.').unwrap();
        let signature = jwt.rsplit_once('.').unwrap().1;
        let forged = format!(
            "{head}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(other.to_string())
        );
        let thumbprint = match named {
            Named::Sha1 => registered().thumbprints().sha1_hex(),
            Named::Sha256 => upper_hex(&registered().thumbprints().sha256),
        };
        let text = format!(
            "AADSTS700027: Client assertion contains an invalid signature. [Reason - Key was found, but use of the key to verify the signature failed., Thumbprint of key used by client: '{thumbprint}', Found key 'Start=02/14/2024 11:30:00, End=02/14/2025 11:30:00', {}",
            visit(demo::APP_ID)
        );
        assert_refusal(&answer(NOW, &forged), 401, "invalid_client", 700027, &text);
    }
}

#[test]
fn an_expired_certificate_is_700027_the_key_used_is_expired() {
    let later = "2025-02-14T11:30:00Z";
    let jwt = assertion(&registered(), Alg::Ps256, Named::Sha256, &claims(at(later)));
    let text = format!(
        "AADSTS700027: Client assertion contains an invalid signature. [Reason - The key used is expired., Thumbprint of key used by client: '{}', Found key 'Start=02/14/2024 11:30:00, End=02/14/2025 11:30:00', {}",
        upper_hex(&registered().thumbprints().sha256),
        visit(demo::APP_ID)
    );
    assert_refusal(&answer(later, &jwt), 401, "invalid_client", 700027, &text);
    // A second earlier, the same certificate works.
    let before = "2025-02-14T11:29:59Z";
    let jwt = assertion(
        &registered(),
        Alg::Ps256,
        Named::Sha256,
        &claims(at(before)),
    );
    assert_eq!(answer(before, &jwt).0, 200);
}

#[test]
fn an_assertion_outside_its_window_is_700024_with_the_times() {
    let signed = at(NOW) - TimeDelta::minutes(20);
    let jwt = assertion(&registered(), Alg::Rs256, Named::Sha1, &claims(signed));
    let text = "AADSTS700024: Client assertion is not within its valid time range. Current time: 2025-01-10T08:00:00.0000000Z, assertion valid from 2025-01-10T07:40:00.0000000Z, expiry time of assertion 2025-01-10T07:50:00.0000000Z. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .";
    assert_refusal(&answer(NOW, &jwt), 401, "invalid_client", 700024, text);
    // Four minutes past `exp` is within the clock skew Entra allows.
    let skewed = at(NOW) - TimeDelta::minutes(14);
    let jwt = assertion(&registered(), Alg::Rs256, Named::Sha1, &claims(skewed));
    assert_eq!(answer(NOW, &jwt).0, 200);
}

#[test]
fn audience_client_id_and_shape_are_checked_with_their_own_errors() {
    let mut wrong_aud = claims(at(NOW));
    wrong_aud["aud"] = json!("https://login.microsoftonline.com/common/oauth2/v2.0/token");
    let jwt = assertion(&registered(), Alg::Rs256, Named::Sha256, &wrong_aud);
    assert_refusal(
        &answer(NOW, &jwt),
        401,
        "invalid_client",
        50012,
        "AADSTS50012: Client assertion audience claim does not match Realm issuer.",
    );
    let mut v1_aud = claims(at(NOW));
    v1_aud["aud"] = json!(format!(
        "https://login.microsoftonline.com/{}/oauth2/token",
        demo::TENANT_DOMAIN
    ));
    let jwt = assertion(&registered(), Alg::Rs256, Named::Sha256, &v1_aud);
    assert_eq!(
        answer(NOW, &jwt).0,
        200,
        "the v1 endpoint by domain is accepted"
    );
    let mut other_client = claims(at(NOW));
    other_client["iss"] = json!("00000000-0000-4000-8000-000000000000");
    let jwt = assertion(&registered(), Alg::Rs256, Named::Sha256, &other_client);
    assert_refusal(
        &answer(NOW, &jwt),
        401,
        "invalid_client",
        700021,
        "AADSTS700021: Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
    );
    assert_refusal(
        &answer(NOW, "not-a-jwt"),
        401,
        "invalid_client",
        50027,
        "AADSTS50027: JWT token is invalid or malformed.",
    );
}

#[test]
fn an_assertion_without_its_type_is_a_missing_parameter() {
    let jwt = assertion(&registered(), Alg::Rs256, Named::Sha256, &claims(at(NOW)));
    let without_type = form(&jwt).replace(
        "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&",
        "",
    );
    let answer = replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(at(NOW), tenant_with_certificate(), 7);
        parse(&sim.raw_token(&without_type).await)
    });
    assert_refusal(
        &answer,
        400,
        "invalid_request",
        900144,
        "AADSTS900144: The request body must contain the following parameter: 'client_assertion_type'.",
    );
}

#[test]
fn graph_lists_the_apps_key_credentials_with_their_end_dates() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(at(NOW), tenant_with_certificate(), 7);
        let secret_form = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default",
            demo::APP_ID,
            SECRET.replace('~', "%7E")
        );
        let (_, token) = parse(&sim.raw_token(&secret_form).await);
        let token = token["access_token"].as_str().unwrap();
        let get = |target: String| {
            format!(
                "GET {target} HTTP/1.1\r\nHost: graph.microsoft.com\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            )
        };
        let one = format!("/v1.0/applications(appId='{}')", demo::APP_ID);
        let (status, app) = parse(&sim.raw(&get(one.clone())).await);
        assert_eq!(status, 200, "{app}");
        let keys = app["keyCredentials"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        let key = &keys[0];
        assert_eq!(key["customKeyIdentifier"], registered().thumbprints().sha1_hex());
        assert_eq!(key["displayName"], "mailman-prod");
        assert_eq!(key["endDateTime"], "2025-02-14T11:30:00.0000000Z");
        assert_eq!(key["startDateTime"], "2024-02-14T11:30:00.0000000Z");
        assert_eq!(key["type"], "AsymmetricX509Cert");
        assert_eq!(key["usage"], "Verify");
        assert_eq!(key["key"], Value::Null, "the key only with $select");
        assert_eq!(key["keyId"].as_str().unwrap().len(), 36);
        assert_eq!(app["passwordCredentials"].as_array().unwrap().len(), 1);
        let selected = format!("{one}?$select=id,keyCredentials");
        let (_, app) = parse(&sim.raw(&get(selected)).await);
        let der = STANDARD
            .decode(app["keyCredentials"][0]["key"].as_str().unwrap())
            .unwrap();
        assert_eq!(der, registered().cert_der);
    });
}

fn certificate_config(
    sim: &Sim,
    certificate: &CertificateSpec,
    header: ThumbprintHeader,
) -> TokenConfig {
    let source = CertificateSource::Pem {
        cert: certificate.cert_pem.clone(),
        key: certificate.key_pem().to_string(),
    };
    let mut config = TokenConfig::new(
        sim.token_url(),
        demo::APP_ID,
        SecretSource::Certificate(source),
    );
    config.thumbprint_header = header;
    config
}

#[test]
fn the_bundled_client_gets_tokens_with_its_certificate_until_it_expires() {
    for header in [ThumbprintHeader::Sha256, ThumbprintHeader::Sha1] {
        replay_runtime().unwrap().block_on(async {
            let sim = Sim::new(at("2025-02-14T11:00:00Z"), tenant_with_certificate(), 7);
            let tokens = provider(&sim, certificate_config(&sim, &registered(), header));
            let token = tokens.token(GRAPH_SCOPE).await.unwrap();
            assert!(token.expose().starts_with("eyJ"));
            // Past the certificate's end the cached token still works until its own expiry;
            // a fresh provider is refused with the certificate error.
            sim.clock.sleep(std::time::Duration::from_secs(1800)).await;
            let fresh = provider(&sim, certificate_config(&sim, &registered(), header));
            let refused = fresh.token(GRAPH_SCOPE).await.unwrap_err();
            assert_eq!(
                refused,
                Failure::Credential(CredentialProblem::Other(Some(700027)))
            );
            let journal = sim.mocks.journal().render();
            assert!(!journal.contains(registered().key_pem().lines().nth(1).unwrap()));
            assert!(
                journal.contains("client_assertion=%5Bredacted%5D"),
                "{journal}"
            );
        });
    }
}

#[test]
fn a_certificate_unknown_to_the_app_is_a_credential_failure_for_the_client() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(at(NOW), tenant_with_certificate(), 7);
        let tokens = provider(
            &sim,
            certificate_config(&sim, &stranger(), ThumbprintHeader::Sha256),
        );
        assert_eq!(
            tokens.token(EXCHANGE_SCOPE).await.unwrap_err(),
            Failure::Credential(CredentialProblem::Other(Some(700027)))
        );
    });
}

fn upper_hex(bytes: &[u8]) -> String {
    maildrill::tenant::certificate::upper_hex(bytes)
}
