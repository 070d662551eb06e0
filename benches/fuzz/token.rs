//! Token target: client-credentials form posts (secrets, Basic, client assertions) at the
//! Entra token endpoint, valid and broken.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use maildrill::tenant::certificate::{CertificateSpec, TEST_KEYS};
use maildrill::tenant::{TenantSpec, demo};
use serde_json::{Value, json};

use super::harness::{Check, Gen};
use super::http::{self, EXCHANGE_SCOPE, GRAPH_SCOPE, Request, SECRET, pct};
use super::mutate::{self, HUGE_NUMBERS, NASTY, Rng};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Generates token requests; holds client assertions signed at set-up (signing per input
/// would measure RSA, not the endpoint).
pub struct TokenGen {
    assertions: Vec<String>,
}

/// The demo tenant with a registered certificate, and a generator whose signed assertions
/// name it.
pub fn setup() -> (TokenGen, TenantSpec) {
    let start = http::start();
    let certificate = CertificateSpec::issue(
        TEST_KEYS[0],
        "fuzz",
        start - chrono::TimeDelta::days(30),
        start + chrono::TimeDelta::days(300),
    )
    .expect("a test certificate");
    let now = start.timestamp();
    let audience = format!(
        "https://login.microsoftonline.com/{}/oauth2/v2.0/token",
        demo::TENANT_ID
    );
    let claims = [
        json!({"aud": audience, "iss": demo::APP_ID, "sub": demo::APP_ID, "jti": "j1", "nbf": now, "exp": now + 600}),
        json!({"aud": audience, "iss": demo::APP_ID, "sub": demo::APP_ID, "jti": "j2", "nbf": now, "exp": now - 600}),
        json!({"aud": "https://elsewhere", "iss": demo::APP_ID, "sub": demo::APP_ID, "nbf": now, "exp": now + 600}),
        json!({"aud": [audience], "iss": 7, "sub": null, "nbf": "now", "exp": 1e300}),
        json!({"aud": audience, "iss": demo::APP_ID, "sub": demo::APP_ID, "nbf": i64::MIN, "exp": i64::MAX}),
        json!({"aud": audience, "iss": demo::APP_ID, "sub": demo::APP_ID, "nbf": now + 86_400, "exp": u64::MAX}),
        json!({}),
        json!([1, 2, 3]),
    ];
    let mut assertions = Vec::new();
    for (i, claims) in claims.iter().enumerate() {
        let thumbprints = certificate.thumbprints();
        let header = match i % 3 {
            0 => json!({"alg": "RS256", "typ": "JWT", "x5t": thumbprints.x5t()}),
            1 => json!({"alg": "PS256", "typ": "JWT", "x5t#S256": thumbprints.x5t_s256()}),
            _ => json!({"alg": "none", "x5t": thumbprints.x5t(), "kid": 5}),
        };
        assertions.push(sign(&certificate, &header, claims));
    }
    let mut tenant = http::tenant();
    tenant.apps[0].certificates.push(certificate);
    (TokenGen { assertions }, tenant)
}

/// A JWT over `header` and `claims`, signed RS256 with the certificate's key.
fn sign(certificate: &CertificateSpec, header: &Value, claims: &Value) -> String {
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
    let der = STANDARD.decode(body).expect("the test key is base64");
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).expect("the test key is PKCS#8");
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .expect("RSA signs");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

impl Gen for TokenGen {
    type Input = Request;

    fn input(&self, r: &mut Rng) -> Request {
        let method = if r.below(12) == 0 {
            r.pick(&["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
        } else {
            "POST"
        };
        let mut request = Request::new(method, uri(r), Vec::new());
        request.body = match r.below(10) {
            0..=6 => self.form(r),
            7 | 8 => {
                let seed = self.form(r);
                let dictionary: [&[u8]; 6] =
                    [b"&", b"=", b"%", b"grant_type=", b"+", SECRET.as_bytes()];
                mutate::mutate(r, &seed, &dictionary, 100_000)
            }
            _ => mutate::random_bytes(r, 5000),
        };
        headers(r, &mut request);
        request
    }

    fn show(&self, input: &Request) -> String {
        input.show()
    }
}

fn uri(r: &mut Rng) -> String {
    let nasty = pct(r.pick(NASTY).as_bytes());
    let long = "t".repeat(r.range(100, 5000));
    let tenant = r
        .pick(&[
            demo::TENANT_ID,
            demo::TENANT_ID,
            demo::TENANT_DOMAIN,
            "common",
            "organizations",
            "consumers",
            "4F3C9A2E-8B1D-4E6F-A5C7-2D9E0B1F3A64",
            "",
            "contoso.onmicrosoft.com.",
            "%34f3c9a2e-8b1d-4e6f-a5c7-2d9e0b1f3a64",
            &nasty,
            &long,
        ])
        .to_string();
    let query = r.pick(&[
        "",
        "",
        "",
        "?",
        "?api-version=1.0",
        "?%zz",
        "?grant_type=client_credentials",
        "?&&==",
    ]);
    let path = r.pick(&[
        "/oauth2/v2.0/token",
        "/oauth2/v2.0/token",
        "/oauth2/v2.0/token/",
        "/oauth2/token",
        "/v2.0/.well-known/openid-configuration",
    ]);
    format!("/{tenant}{path}{query}")
}

impl TokenGen {
    /// A form: a good one (secret or assertion), then changed.
    fn form(&self, r: &mut Rng) -> Vec<u8> {
        let assertion = self.assertion(r);
        let mut pairs: Vec<(String, String)> = vec![
            ("grant_type".into(), "client_credentials".into()),
            ("client_id".into(), demo::APP_ID.into()),
            (
                "scope".into(),
                r.pick(&[GRAPH_SCOPE, EXCHANGE_SCOPE]).into(),
            ),
        ];
        if r.one_in(3) {
            pairs.push(("client_assertion_type".into(), JWT_BEARER.into()));
            pairs.push(("client_assertion".into(), assertion));
        } else if r.below(6) > 0 {
            pairs.push(("client_secret".into(), SECRET.into()));
        }
        for _ in 0..r.below(5) {
            change(r, &mut pairs);
        }
        encode(r, &pairs)
    }

    fn assertion(&self, r: &mut Rng) -> String {
        let signed = &self.assertions[r.below(self.assertions.len())];
        match r.below(6) {
            0 => {
                let bytes = mutate::mutate(r, signed.as_bytes(), &[b".", b"=", b"-", b"_"], 20_000);
                String::from_utf8_lossy(&bytes).into_owned()
            }
            1 => {
                let parts: Vec<&str> = signed.split('.').collect();
                let n = r.below(parts.len() + 2);
                parts
                    .iter()
                    .cycle()
                    .take(n)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(".")
            }
            2 => format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(value_text(r)),
                URL_SAFE_NO_PAD.encode(value_text(r))
            ),
            _ => signed.clone(),
        }
    }
}

/// A random JSON text: objects, huge numbers, nesting.
fn value_text(r: &mut Rng) -> String {
    match r.below(5) {
        0 => format!("{{\"alg\":\"RS256\",\"x5t\":{}}}", r.pick(HUGE_NUMBERS)),
        1 => "[".repeat(r.range(1, 3000)),
        2 => format!(
            "{{\"exp\":{},\"nbf\":{}}}",
            r.pick(HUGE_NUMBERS),
            r.pick(HUGE_NUMBERS)
        ),
        3 => mutate::escape(&r.some_bytes(100)),
        _ => "{}".into(),
    }
}

const KEYS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "scope",
    "claims",
    "client_info",
    "resource",
    "tenant",
    "Grant_Type",
    "scope ",
    "",
];

fn change(r: &mut Rng, pairs: &mut Vec<(String, String)>) {
    let key = r.pick(KEYS).to_string();
    let long = if r.one_in(4) {
        "v".repeat(r.range(1000, 70_000))
    } else {
        "v".into()
    };
    let (nasty, huge) = (r.pick(NASTY), r.pick(HUGE_NUMBERS));
    let value = r
        .pick(&[
            "client_credentials",
            "CLIENT_CREDENTIALS",
            "authorization_code",
            "refresh_token",
            "",
            demo::APP_ID,
            "00000000-0000-0000-0000-000000000000",
            SECRET,
            "Mlm8Q~wrong",
            GRAPH_SCOPE,
            EXCHANGE_SCOPE,
            "https://graph.microsoft.com/Mail.Send",
            "openid offline_access",
            ".default",
            "https://graph.microsoft.com/.default https://outlook.office365.com/.default",
            "api://x/.default",
            JWT_BEARER,
            nasty,
            huge,
            &long,
        ])
        .to_string();
    match r.below(4) {
        0 if !pairs.is_empty() => {
            let i = r.below(pairs.len());
            pairs.remove(i);
        }
        1 if !pairs.is_empty() => {
            let i = r.below(pairs.len());
            pairs[i].1 = value;
        }
        2 if !pairs.is_empty() => {
            let i = r.below(pairs.len());
            let duplicate = (pairs[i].0.clone(), value);
            pairs.insert(r.below(pairs.len() + 1), duplicate);
        }
        _ => pairs.push((key, value)),
    }
}

/// The pairs as a body: properly form-encoded, raw, or every byte percent-encoded.
fn encode(r: &mut Rng, pairs: &[(String, String)]) -> Vec<u8> {
    let joined = |f: &dyn Fn(&str) -> String| {
        pairs
            .iter()
            .map(|(k, v)| format!("{}={}", f(k), f(v)))
            .collect::<Vec<_>>()
            .join("&")
    };
    match r.below(6) {
        0 => joined(&|s| s.to_string()).into_bytes(),
        1 => joined(&|s| pct(s.as_bytes())).into_bytes(),
        2 => joined(&|s| pct(pct(s.as_bytes()).as_bytes())).into_bytes(),
        _ => form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
            .into_bytes(),
    }
}

fn headers(r: &mut Rng, request: &mut Request) {
    let content_type = r.pick(&[
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-8",
        "APPLICATION/X-WWW-FORM-URLENCODED",
        "application/x-www-form-urlencoded\u{0}",
        "application/json",
        "text/plain",
        "multipart/form-data; boundary=x",
        "",
        "application/x-www-form-urlencodedx",
    ]);
    if r.below(12) > 0 {
        request
            .headers
            .push(("Content-Type", content_type.as_bytes().to_vec()));
    }
    if r.one_in(5) {
        let id = r.pick(&[
            demo::APP_ID,
            "",
            "a:b",
            "%zz",
            "9b2e7c41-3f5a-4d8b-b6e0-1c4a7f9d2e53:x",
        ]);
        let secret = r.pick(&[SECRET, "", "wrong", "a:b", "%", "+"]);
        let credentials = format!("{}:{}", pct(id.as_bytes()), pct(secret.as_bytes()));
        let value = match r.below(6) {
            0 => format!("Basic {}", STANDARD.encode(format!("{id}{secret}"))),
            1 => format!("basic  {}=", STANDARD.encode(&credentials)),
            2 => "Basic".into(),
            3 => format!("Bearer {}", STANDARD.encode(&credentials)),
            _ => format!("Basic {}", STANDARD.encode(&credentials)),
        };
        request.headers.push(("Authorization", value.into_bytes()));
    }
    if r.one_in(6) {
        let id = r.pick(&["5b3c1f0e-2a4d-4e6f-8a9b-0c1d2e3f4a5b", "x", "", "\"}", "é"]);
        request
            .headers
            .push(("client-request-id", id.as_bytes().to_vec()));
    }
}

/// Posts token requests at the mocks.
pub struct TokenCheck(pub http::Target);

impl Check<Request> for TokenCheck {
    fn check(&mut self, input: &Request) -> Result<u16, String> {
        match self.0.handle(input)? {
            None => Ok(0),
            Some((path, response)) => http::check_reply(&path, &response),
        }
    }
}
