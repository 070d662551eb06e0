//! Arbitrary requests against the HTTP mocks: never a panic, never a 5xx the real service would
//! not give, and always Entra's or Graph's error envelope.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use bytes::Bytes;
use common::*;
use maildrill::journal::MockName;
use maildrill::mock::Action;
use maildrill::mock::route;
use maildrill::tenant::{Directory, Resource, demo};
use maildrill::time::replay_runtime;
use proptest::prelude::*;
use serde_json::Value;

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(demo::TENANT_ID.to_string()),
        Just(demo::TENANT_DOMAIN.to_string()),
        Just(demo::MAILBOX.to_string()),
        Just("inbox".to_string()),
        Just(format!("applications(appId='{}')", demo::APP_ID)),
        "[A-Za-z0-9._~%-]{0,12}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    let known = prop_oneof![
        segment().prop_map(|t| format!("/{t}/oauth2/v2.0/token")),
        segment().prop_map(|t| format!("/{t}/v2.0/.well-known/openid-configuration")),
        segment().prop_map(|u| format!("/v1.0/users/{u}/sendMail")),
        (segment(), segment())
            .prop_map(|(u, f)| format!("/v1.0/users/{u}/mailFolders/{f}/messages/delta")),
        segment().prop_map(|a| format!("/v1.0/applications/{a}")),
        segment().prop_map(|a| format!("/v1.0/{a}/addPassword")),
        segment().prop_map(|a| format!("/v1.0/applications/{a}/removePassword")),
    ];
    let random =
        proptest::collection::vec(segment(), 0..5).prop_map(|s| format!("/{}", s.join("/")));
    let query = proptest::option::of("[A-Za-z0-9$=&%' -]{0,24}");
    (prop_oneof![3 => known, 1 => random], query).prop_map(|(p, q)| match q {
        Some(q) => format!("{p}?{}", q.replace(' ', "%20").replace('\'', "%27")),
        None => p,
    })
}

fn form_body() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        Just("grant_type"),
        Just("client_id"),
        Just("client_secret"),
        Just("scope"),
        Just("client_assertion"),
        Just("claims"),
        Just("client_info"),
    ];
    let value = prop_oneof![
        Just("client_credentials".to_string()),
        Just(demo::APP_ID.to_string()),
        Just(SECRET.to_string()),
        Just(GRAPH_SCOPE.to_string()),
        Just(EXCHANGE_SCOPE.to_string()),
        ".{0,20}",
    ];
    proptest::collection::vec((key, value), 0..6).prop_map(|pairs| {
        let encoded: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        encoded.into_bytes()
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        form_body(),
        proptest::collection::vec(any::<u8>(), 0..200),
        Just(
            br#"{"message":{"subject":"s","toRecipients":[{"emailAddress":{"address":"a@b.c"}}]}}"#
                .to_vec()
        ),
        Just(br#"{"passwordCredential":{"displayName":"x","endDateTime":"garbage"}}"#.to_vec()),
        Just(br#"{"keyId":"nope"}"#.to_vec()),
    ]
}

#[derive(Debug, Clone)]
enum Auth {
    None,
    Garbage(String),
    GraphToken,
    ExchangeToken,
    Basic(String),
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        Just(Auth::None),
        ".{0,40}".prop_map(Auth::Garbage),
        Just(Auth::GraphToken),
        Just(Auth::ExchangeToken),
        "[A-Za-z0-9+/=]{0,40}".prop_map(Auth::Basic),
    ]
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    proptest::option::of(prop_oneof![
        Just("application/x-www-form-urlencoded"),
        Just("application/json"),
        Just("text/plain"),
        Just("multipart/form-data"),
    ])
}

fn method() -> impl Strategy<Value = http::Method> {
    prop_oneof![
        Just(http::Method::GET),
        Just(http::Method::POST),
        Just(http::Method::PUT),
        Just(http::Method::DELETE),
        Just(http::Method::PATCH),
    ]
}

fn check_envelope(
    mock: MockName,
    path: &str,
    status: u16,
    body: &[u8],
) -> Result<(), TestCaseError> {
    prop_assert!(status < 500, "{path} answered {status}");
    let json: Option<Value> = serde_json::from_slice(body).ok();
    match mock {
        MockName::Graph => {
            if status >= 400 {
                let error = json.as_ref().and_then(|j| j.get("error")).cloned();
                prop_assert!(
                    error
                        .as_ref()
                        .and_then(|e| e.get("code"))
                        .is_some_and(Value::is_string),
                    "{path}: {status} {body:?}"
                );
                prop_assert!(
                    error
                        .as_ref()
                        .and_then(|e| e.get("message"))
                        .is_some_and(Value::is_string)
                );
            } else {
                prop_assert!(body.is_empty() || json.is_some(), "{path}: {status}");
            }
        }
        _ if path.contains("/oauth2/v2.0/token")
            || path.contains("/.well-known/openid-configuration") =>
        {
            let json = json.unwrap_or_default();
            if status >= 400 {
                prop_assert!(
                    json.get("error").is_some_and(Value::is_string),
                    "{path}: {status} {json}"
                );
                let description = json
                    .get("error_description")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                prop_assert!(description.starts_with("AADSTS"), "{description}");
                prop_assert!(description.contains(" Trace ID: "));
                prop_assert!(json.get("error_codes").is_some_and(Value::is_array));
            } else {
                prop_assert!(json.is_object(), "{path}: {status}");
            }
        }
        _ => prop_assert_eq!(status, 404, "{}", path),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_requests_get_well_formed_replies(
        method in method(),
        path in path(),
        content_type in content_type(),
        auth in auth(),
        body in body(),
    ) {
        let runtime = replay_runtime().unwrap();
        runtime.block_on(async {
            let sim = Sim::new(at("2025-02-14T11:00:00Z"), tenant(at("2025-03-01T00:00:00Z")), 11);
            let Ok(uri) = path.parse::<http::Uri>() else { return Ok(()) };
            let mut builder = http::Request::builder().method(method).uri(uri);
            if let Some(content_type) = content_type {
                builder = builder.header("Content-Type", content_type);
            }
            let now = sim.clock.now_utc();
            let header = match &auth {
                Auth::None => None,
                Auth::Garbage(text) => Some(format!("Bearer {text}")),
                Auth::Basic(text) => Some(format!("Basic {text}")),
                Auth::GraphToken | Auth::ExchangeToken => {
                    let resource = if matches!(auth, Auth::GraphToken) { Resource::Graph } else { Resource::Exchange };
                    let token = Directory::lock(sim.mocks.directory())
                        .issue_token(demo::TENANT_ID, demo::APP_ID, resource, now)
                        .unwrap();
                    Some(format!("Bearer {}", token.value))
                }
            };
            if let Some(value) = header.and_then(|h| http::HeaderValue::from_str(&h).ok()) {
                builder = builder.header("Authorization", value);
            }
            // A secret sent under another name (say `grant_type`) is the client's own leak:
            // Entra echoes that value in its error, and the journal shows what was answered.
            let misplaced = form_urlencoded::parse(&body)
                .any(|(k, v)| v.contains(SECRET) && k != "client_secret");
            let request = builder.body(Bytes::from(body)).unwrap();
            let (mock, _) = route(request.uri().path());
            let path = request.uri().path().to_string();
            let reply = sim.mocks.handle(request);
            let Action::Respond(response) = reply.action else {
                return Err(TestCaseError::fail("no fault was injected, yet the mock did not respond"));
            };
            check_envelope(mock, &path, response.status().as_u16(), response.body())?;
            let journal = sim.mocks.journal().render();
            prop_assert!(misplaced || !journal.contains(SECRET), "{journal}");
            Ok(())
        })?;
    }
}

#[test]
fn broken_transactions_store_nothing() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::new(
            at("2025-02-14T11:00:00Z"),
            tenant(at("2025-03-01T00:00:00Z")),
            11,
        );
        let now = sim.clock.now_utc();
        let token = Directory::lock(sim.mocks.directory())
            .issue_token(demo::TENANT_ID, demo::APP_ID, Resource::Graph, now)
            .unwrap();
        for body in [&b"{"[..], b"{\"message\":{}}", b"\xff\xfe", b""] {
            let request = http::Request::post(format!("/v1.0/users/{}/sendMail", demo::MAILBOX))
                .header("Authorization", format!("Bearer {}", token.value))
                .header("Content-Type", "application/json")
                .body(Bytes::from_static(body))
                .unwrap();
            let reply = sim.mocks.handle(request);
            let Action::Respond(response) = reply.action else {
                panic!("no reply")
            };
            assert_eq!(response.status(), 400);
        }
        let directory = Directory::lock(sim.mocks.directory());
        assert_eq!(
            directory
                .mailbox(demo::TENANT_ID, demo::MAILBOX)
                .unwrap()
                .sent()
                .len(),
            0
        );
    });
}
