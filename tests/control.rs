//! The control API on the socket wiring, driven with reqwest as a test suite in any language
//! would drive `maildrill serve`'s: the clock, secrets, faults, evidence, reset, the OpenAPI
//! document, and the refusals (no token, bad calls that change nothing).
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use common::*;
use maildrill::control::ControlOptions;
use maildrill::tenant::demo;
use maildrill::time::CalendarClock;
use maildrill::{Seed, Sim, SocketOptions};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Control {
    base: String,
    control: String,
    token: String,
    client: reqwest::Client,
    _sim: Sim,
}

async fn control() -> Control {
    let options =
        ControlOptions::new(CalendarClock::starting_at(at("2025-02-14T11:00:00Z"))).unwrap();
    let token = options.token.clone();
    let sim = Sim::builder()
        .seed(Seed(5))
        .tenant(tenant(at("2025-02-14T11:30:00Z")))
        .control(options)
        .sockets(SocketOptions::default())
        .build()
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let base = sim.socket_base().unwrap().to_string();
    Control {
        control: format!("{base}/_maildrill"),
        base,
        token,
        client,
        _sim: sim,
    }
}

impl Control {
    /// A control call; returns the status and the JSON body (`Null` when empty).
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}/{path}", self.control))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, body)
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// A client-credentials token request with `secret`: the status and the body.
    async fn token(&self, secret: &str) -> (u16, Value) {
        let response = self
            .client
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                self.base,
                demo::TENANT_ID
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", demo::APP_ID),
                ("client_secret", secret),
                ("scope", GRAPH_SCOPE),
            ])
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn instant(value: &Value) -> chrono::DateTime<chrono::Utc> {
    at(value.as_str().unwrap())
}

fn aadsts(body: &Value) -> String {
    body["error_codes"][0].to_string()
}

#[tokio::test]
async fn every_call_needs_the_token() {
    let c = control().await;
    for token in [None, Some("not-the-token")] {
        let mut request = c.client.get(format!("{}/clock", c.control));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert!(response.headers().contains_key("www-authenticate"));
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], 401);
    }
    // The mocks themselves need no control token.
    assert_eq!(c.token(SECRET).await.0, 200);
}

#[tokio::test]
async fn the_clock_jumps_to_a_secrets_end_and_never_back() {
    let c = control().await;
    let clock = c.get("clock").await;
    assert_eq!(clock["start"], "2025-02-14T11:00:00Z");
    assert_eq!(c.token(SECRET).await.0, 200);
    let (status, moved) = c
        .call(
            Method::POST,
            "clock/advance",
            Some(json!({"to": "2025-02-14T11:30:00Z"})),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    assert!(
        instant(&moved["now"]) >= at("2025-02-14T11:30:00Z"),
        "{moved}"
    );
    let (status, body) = c.token(SECRET).await;
    assert_eq!(
        (status, aadsts(&body)),
        (401, "7000222".to_string()),
        "{body}"
    );
    let (status, problem) = c
        .call(
            Method::POST,
            "clock/advance",
            Some(json!({"to": "2025-02-14T11:00:00Z"})),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["field"], "to");
    let (status, problem) = c
        .call(
            Method::POST,
            "clock/advance",
            Some(json!({"by": "an hour"})),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["field"], "by");
    let (status, _) = c
        .call(Method::POST, "clock/advance", Some(json!({"by": "1h"})))
        .await;
    assert_eq!(status, 200);
    assert!(instant(&c.get("clock").await["now"]) >= at("2025-02-14T12:30:00Z"));
}

#[tokio::test]
async fn secrets_are_added_expired_and_removed_as_a_rotation_does() {
    let c = control().await;
    let apps = c.get("apps").await;
    assert_eq!(apps["apps"][0]["app_id"], demo::APP_ID);
    let old_key = apps["apps"][0]["secrets"][0]["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(apps["apps"][0]["secrets"][0]["state"], "valid");
    assert!(!apps.to_string().contains(SECRET));

    let path = format!("apps/{}/secrets", demo::APP_ID);
    let (status, added) = c
        .call(
            Method::POST,
            &path,
            Some(json!({"display_name": "rotated", "lifetime": "730d"})),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["state"], "propagating");
    let new_secret = added["secret_text"].as_str().unwrap().to_string();
    let new_key = added["key_id"].as_str().unwrap().to_string();
    let (status, body) = c.token(&new_secret).await;
    assert_eq!(
        (status, aadsts(&body)),
        (401, "7000222".to_string()),
        "still propagating"
    );
    c.call(Method::POST, "clock/advance", Some(json!({"by": "11s"})))
        .await;
    assert_eq!(c.token(&new_secret).await.0, 200);

    let (status, expired) = c
        .call(Method::POST, &format!("{path}/{old_key}/expire"), None)
        .await;
    assert_eq!(
        (status.as_u16(), &expired["state"]),
        (200, &json!("expired"))
    );
    assert_eq!(c.token(SECRET).await.0, 401);
    let (status, _) = c
        .call(Method::DELETE, &format!("{path}/{old_key}"), None)
        .await;
    assert_eq!(status, 204);
    let secrets = &c.get("apps").await["apps"][0]["secrets"];
    assert_eq!(secrets.as_array().unwrap().len(), 1);
    assert_eq!(secrets[0]["key_id"], new_key.as_str());

    let (status, problem) = c
        .call(Method::DELETE, &format!("{path}/{old_key}"), None)
        .await;
    assert_eq!((status.as_u16(), &problem["field"]), (404, &json!("key")));
    let (status, problem) = c.call(Method::POST, "apps/nobody/secrets", None).await;
    assert_eq!((status.as_u16(), &problem["field"]), (404, &json!("app")));
}

#[tokio::test]
async fn faults_apply_list_and_clear() {
    let c = control().await;
    let throttle = json!({"target": "entra", "kind": "respond", "reply": "throttled",
                          "operation": "token", "first": 1, "retry_after": "7"});
    let (status, fault) = c.call(Method::POST, "faults", Some(throttle)).await;
    assert_eq!(status, 201, "{fault}");
    let response = c.token(SECRET).await;
    assert_eq!(response.0, 429);
    assert_eq!(c.token(SECRET).await.0, 200, "only the first request");
    let listed = c.get("faults").await;
    assert_eq!(listed["faults"][0]["matched"], 2);
    assert_eq!(listed["faults"][0]["retry_after"], "7");

    let id = fault["id"].as_u64().unwrap();
    let (status, _) = c.call(Method::DELETE, &format!("faults/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, problem) = c.call(Method::DELETE, &format!("faults/{id}"), None).await;
    assert_eq!((status.as_u16(), &problem["field"]), (404, &json!("id")));
    c.call(
        Method::POST,
        "faults",
        Some(json!({"target": "entra", "kind": "reset_peer"})),
    )
    .await;
    let (status, _) = c.call(Method::DELETE, "faults", None).await;
    assert_eq!(status, 204);
    assert_eq!(c.token(SECRET).await.0, 200);
}

#[tokio::test]
async fn a_fault_scoped_to_an_app_or_a_mailbox_spares_the_others() {
    let c = control().await;
    let elsewhere = json!({"target": "entra", "kind": "respond", "reply": "expired_secret",
        "app": "00000000-0000-4000-8000-000000000000"});
    let (status, view) = c.call(Method::POST, "faults", Some(elsewhere)).await;
    assert_eq!(status, 201, "{view}");
    assert_eq!(view["app"], "00000000-0000-4000-8000-000000000000");
    let (status, token) = c.token(SECRET).await;
    assert_eq!(status, 200, "{token}");
    let ours = json!({"target": "entra", "kind": "respond", "reply": "expired_secret",
        "app": demo::APP_ID.to_ascii_uppercase()});
    assert_eq!(c.call(Method::POST, "faults", Some(ours)).await.0, 201);
    let (status, refused) = c.token(SECRET).await;
    assert_eq!((status, aadsts(&refused)), (401, "7000222".to_string()));
    assert_eq!(c.call(Method::DELETE, "faults", None).await.0, 204);

    let token = c.token(SECRET).await.1["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let send = || async {
        let mail = json!({"message": {"subject": "s", "body": {"contentType": "Text",
            "content": "hi"}, "toRecipients": [{"emailAddress": {"address": "a@example.com"}}]}});
        c.client
            .post(format!("{}/v1.0/users/{}/sendMail", c.base, demo::MAILBOX))
            .bearer_auth(&token)
            .json(&mail)
            .send()
            .await
            .unwrap()
            .status()
    };
    let other = json!({"target": "graph", "kind": "respond", "reply": "mailbox_concurrency",
        "mailbox": "sales@contoso.onmicrosoft.com"});
    assert_eq!(c.call(Method::POST, "faults", Some(other)).await.0, 201);
    assert_eq!(send().await, 202);
    let mine = json!({"target": "graph", "kind": "respond", "reply": "mailbox_concurrency",
        "mailbox": demo::MAILBOX});
    assert_eq!(c.call(Method::POST, "faults", Some(mine)).await.0, 201);
    assert_eq!(send().await, 429);
    let listed = c.get("faults").await;
    assert_eq!(listed["faults"][1]["mailbox"], demo::MAILBOX, "{listed}");
    assert_eq!(listed["faults"][0]["matched"], 0, "{listed}");

    let on_alerts = json!({"target": "alerts", "kind": "timeout", "mailbox": demo::MAILBOX});
    let (status, problem) = c.call(Method::POST, "faults", Some(on_alerts)).await;
    assert_eq!(
        (status.as_u16(), &problem["field"]),
        (400, &json!("mailbox"))
    );
}

#[tokio::test]
async fn a_refused_fault_names_its_field_and_changes_nothing() {
    let c = control().await;
    c.call(
        Method::POST,
        "faults",
        Some(json!({"target": "graph", "kind": "timeout"})),
    )
    .await;
    for (bad, field, valid) in [
        (
            json!({"target": "exchange", "kind": "timeout"}),
            "target",
            "entra",
        ),
        (
            json!({"target": "entra", "kind": "slow"}),
            "kind",
            "latency",
        ),
        (
            json!({"target": "entra", "kind": "respond", "reply": "nope"}),
            "reply",
            "expired_secret",
        ),
    ] {
        let (status, problem) = c.call(Method::POST, "faults", Some(bad)).await;
        assert_eq!(status, 400, "{problem}");
        assert_eq!(problem["field"], field, "{problem}");
        let valid_words: Vec<&str> = problem["valid"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(valid_words.contains(&valid), "{problem}");
    }
    for (bad, field) in [
        (
            json!({"target": "entra", "kind": "timeout", "probability": 2}),
            "probability",
        ),
        (json!({"target": "smtp", "kind": "malformed_body"}), "kind"),
        (
            json!({"target": "graph", "kind": "timeout", "colour": "red"}),
            "colour",
        ),
        (json!({"target": "graph", "kind": "limit_data"}), "bytes"),
    ] {
        let (status, problem) = c.call(Method::POST, "faults", Some(bad)).await;
        assert_eq!(status, 400, "{problem}");
        assert!(
            problem["field"].as_str().unwrap().contains(field),
            "{problem}"
        );
    }
    assert_eq!(c.get("faults").await["faults"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_evidence_shows_the_journal_the_mail_and_the_alerts() {
    let c = control().await;
    let (_, token) = c.token(SECRET).await;
    let token = token["access_token"].as_str().unwrap().to_string();
    let mail = json!({"message": {"subject": "hello", "internetMessageId": "<m1@maildrill.test>",
        "body": {"contentType": "Text", "content": "hi"},
        "toRecipients": [{"emailAddress": {"address": "a@example.com"}}]}});
    let sent = c
        .client
        .post(format!("{}/v1.0/users/{}/sendMail", c.base, demo::MAILBOX))
        .bearer_auth(&token)
        .json(&mail)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let alert = json!({"routing_key": "r", "event_action": "trigger", "dedup_key": "k1",
        "payload": {"summary": "secret expires", "source": "mailman", "severity": "warning",
                    "custom_details": {"kind": "credential-expiry"}}});
    let posted = c
        .client
        .post(format!("{}/v2/enqueue", c.base))
        .json(&alert)
        .send()
        .await;
    assert_eq!(posted.unwrap().status(), 202);

    let messages = c
        .get(&format!("mailboxes/{}/messages", demo::MAILBOX))
        .await;
    assert_eq!(messages["messages"][0]["message_id"], "<m1@maildrill.test>");
    assert_eq!(messages["messages"][0]["via"], "graph");
    let alerts = c.get("alerts").await;
    assert_eq!(alerts["alerts"][0]["kind"], "credential-expiry");
    assert_eq!(alerts["alerts"][0]["status"], 202);

    let tokens = c.get("journal?target=entra&operation=token").await;
    assert_eq!(tokens["entries"].as_array().unwrap().len(), 1);
    assert!(!tokens.to_string().contains(&token), "tokens are redacted");
    let first = c.get("journal?limit=1").await;
    assert_eq!(first["entries"].as_array().unwrap().len(), 1);
    let after = first["next_after"].as_u64().unwrap();
    let rest = c.get(&format!("journal?after={after}&limit=1000")).await;
    assert_eq!(rest["entries"].as_array().unwrap().len(), 2);
    assert!(rest.get("next_after").is_none());
    let (status, problem) = c.call(Method::GET, "journal?target=exchange", None).await;
    assert_eq!(
        (status.as_u16(), &problem["field"]),
        (400, &json!("target"))
    );
}

#[tokio::test]
async fn a_reset_puts_back_the_initial_state() {
    let c = control().await;
    let initial = c.get("apps").await;
    c.call(
        Method::POST,
        &format!("apps/{}/secrets", demo::APP_ID),
        None,
    )
    .await;
    c.call(
        Method::POST,
        "faults",
        Some(json!({"target": "graph", "kind": "timeout"})),
    )
    .await;
    c.call(Method::POST, "clock/advance", Some(json!({"by": "30d"})))
        .await;
    assert_eq!(c.token(SECRET).await.0, 401);
    let (status, _) = c.call(Method::POST, "reset", None).await;
    assert_eq!(status, 204);
    assert_eq!(c.get("apps").await, initial);
    assert_eq!(c.get("faults").await["faults"], json!([]));
    assert!(instant(&c.get("clock").await["now"]) < at("2025-02-14T11:01:00Z"));
    assert_eq!(c.get("journal").await["total"], 0);
    assert_eq!(c.token(SECRET).await.0, 200);
}

#[tokio::test]
async fn the_openapi_document_names_every_route_and_only_those() {
    let c = control().await;
    let doc = c.get("openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            let (status, _) = operation["responses"]
                .as_object()
                .unwrap()
                .iter()
                .next()
                .unwrap();
            assert!(status.starts_with('2'), "{path} {status}");
            // Every schema reference resolves.
            for reference in references(operation) {
                let name = reference.trim_start_matches("#/components/schemas/");
                assert!(
                    doc["components"]["schemas"].get(name).is_some(),
                    "{reference}"
                );
            }
        }
    }
    documented.sort();
    let mut routed: Vec<String> = maildrill::control::ROUTES
        .iter()
        .map(|r| format!("{} /{}", r.method, r.path))
        .collect();
    routed.sort();
    assert_eq!(documented, routed);
    // And each documented path answers (not 404) with its documented method.
    for line in &documented {
        let (method, path) = line.split_once(' ').unwrap();
        let path = path
            .trim_start_matches('/')
            .replace("{app}", demo::APP_ID)
            .replace("{key}", "unknown")
            .replace("{id}", "999")
            .replace("{upn}", demo::MAILBOX);
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, body) = c.call(method, &path, None).await;
        let missing = status == 404 && body["field"].is_null();
        assert!(!missing && status != 405, "{line}: {status} {body}");
    }
}

fn references(value: &Value) -> Vec<String> {
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| match (k.as_str(), v) {
                ("$ref", Value::String(r)) => vec![r.clone()],
                _ => references(v),
            })
            .collect(),
        Value::Array(items) => items.iter().flat_map(references).collect(),
        _ => Vec::new(),
    }
}

impl Control {
    /// A call with a raw body (JSON content type when there is one) and, if `token`, the
    /// control token: the status, the content type and the body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: &str,
        token: bool,
    ) -> (u16, String, String) {
        let mut request = self
            .client
            .request(method, format!("{}/{path}", self.control));
        if token {
            request = request.bearer_auth(&self.token);
        }
        if !body.is_empty() {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, content_type, response.text().await.unwrap())
    }

    /// What a rejected call must leave as it was: the apps and their secrets, the faults, the
    /// clock and the journal.
    async fn state(&self) -> (Value, Value, Value, Value) {
        let journal = self.get("journal").await;
        (
            self.get("apps").await,
            self.get("faults").await,
            self.get("clock").await,
            json!([journal["total"], journal["kept"]]),
        )
    }
}

/// Bodies `POST clock/advance` refuses, with the status.
const REFUSED_ADVANCES: &[(&str, u16)] = &[
    ("", 400),
    ("{}", 400),
    ("not json", 400),
    (r#"{"by": "1h"} x"#, 400),
    (r#"{"by": "an hour"}"#, 400),
    (r#"{"by": 3600}"#, 400),
    (r#"{"by": null, "to": null}"#, 400),
    (r#"{"by": "1h", "to": "2030-01-01T00:00:00Z"}"#, 400),
    (r#"{"by": "1h", "colour": 1}"#, 400),
    (r#"{"to": "2000-01-01T00:00:00Z"}"#, 409),
    (r#"{"to": "9999-06-01T00:00:00Z"}"#, 400),
    (r#"{"by": "300000y"}"#, 400),
    (r#"{"to": "yesterday"}"#, 400),
];

/// Bodies `POST apps/{app}/secrets` refuses for an app that exists.
const REFUSED_SECRETS: &[(&str, u16)] = &[
    (r#"{"lifetime": "0s"}"#, 400),
    (r#"{"end": "2000-01-01T00:00:00Z"}"#, 400),
    (r#"{"value": ""}"#, 400),
    (r#"{"lifetime": "300000y"}"#, 400),
    (r#"{"colour": 1}"#, 400),
    (r#"{"end": "2030-01-01T00:00:00Z", "lifetime": "1d"}"#, 400),
    ("[]", 400),
];

/// Bodies `POST faults` refuses: words outside the vocabulary, parameters missing or out of
/// range, windows that end before they start.
const REFUSED_FAULTS: &[(&str, u16)] = &[
    ("", 400),
    (r#"{"target": "exchange", "kind": "timeout"}"#, 400),
    (r#"{"target": "entra", "kind": "slow"}"#, 400),
    (
        r#"{"target": "entra", "kind": "respond", "reply": "nope"}"#,
        400,
    ),
    (
        r#"{"target": "alerts", "kind": "respond", "reply": "throttled"}"#,
        400,
    ),
    (r#"{"target": "smtp", "kind": "malformed_body"}"#, 400),
    (r#"{"target": "graph", "kind": "limit_data"}"#, 400),
    (
        r#"{"target": "graph", "kind": "bandwidth", "bytes_per_second": 0}"#,
        400,
    ),
    (
        r#"{"target": "graph", "kind": "latency", "delay": "400d"}"#,
        400,
    ),
    (
        r#"{"target": "graph", "kind": "timeout", "probability": 2}"#,
        400,
    ),
    (
        r#"{"target": "graph", "kind": "timeout", "first": -1}"#,
        400,
    ),
    (
        r#"{"target": "graph", "kind": "timeout", "first": 1.5}"#,
        400,
    ),
    (
        r#"{"target": "graph", "kind": "timeout", "duration": "300000y"}"#,
        400,
    ),
    (
        r#"{"target": "graph", "kind": "timeout", "from": "2030-01-01T00:00:00Z",
        "until": "2029-01-01T00:00:00Z"}"#,
        400,
    ),
];

/// Refused calls of every operation that changes something: the method, the path, the raw
/// body, the status. `key` is a secret the app has, `fault` a fault in force.
fn refused_calls(key: &str, fault: u64) -> Vec<(Method, String, &'static str, u16)> {
    let secrets = format!("apps/{}/secrets", demo::APP_ID);
    let with = |method: Method, path: &str, bodies: &[(&'static str, u16)]| {
        let path = path.to_string();
        bodies
            .iter()
            .map(move |(body, status)| (method.clone(), path.clone(), *body, *status))
            .collect::<Vec<_>>()
    };
    let mut calls = with(Method::POST, "clock/advance", REFUSED_ADVANCES);
    calls.extend(with(Method::POST, &secrets, REFUSED_SECRETS));
    calls.extend(with(Method::POST, "faults", REFUSED_FAULTS));
    let missing = [("", 404)];
    for path in [
        "apps/nobody/secrets".to_string(),
        format!("{secrets}/unknown/expire"),
        format!("apps/nobody/secrets/{key}/expire"),
    ] {
        calls.extend(with(Method::POST, &path, &missing));
    }
    for path in [
        format!("{secrets}/unknown"),
        format!("apps/nobody/secrets/{key}"),
        format!("faults/{}", fault + 1000),
    ] {
        calls.extend(with(Method::DELETE, &path, &missing));
    }
    calls.extend(with(Method::DELETE, "faults/abc", &[("", 400)]));
    let reset = [
        (r#"{"event": "reset-password"}"#, 404),
        (r#"{"event": "reboot"}"#, 400),
    ];
    calls.extend(with(Method::POST, "users/nobody@x.example/events", &reset));
    // The demo tenant has no multi-tenant app to name by default.
    let disable = [
        (r#"{"event": "disable-app"}"#, 400),
        (r#"{"event": "withdraw-consent", "app": "x"}"#, 404),
    ];
    calls.extend(with(Method::POST, "tenants/nobody/events", &disable));
    calls.extend(with(Method::PUT, "faults", &[("", 405)]));
    calls.extend(with(Method::GET, "reset", &[("", 405)]));
    // Without the token, even calls that would succeed.
    for (method, path) in [
        (Method::POST, "clock/advance".to_string()),
        (Method::POST, secrets.clone()),
        (Method::POST, format!("{secrets}/{key}/expire")),
        (Method::DELETE, format!("{secrets}/{key}")),
        (Method::POST, "faults".to_string()),
        (Method::DELETE, format!("faults/{fault}")),
        (Method::DELETE, "faults".to_string()),
        (Method::POST, "reset".to_string()),
    ] {
        calls.push((method, path, r#"{"by": "1h"}"#, 401));
    }
    calls
}

#[tokio::test]
async fn a_refused_call_of_any_operation_changes_nothing() {
    let c = control().await;
    let (status, added) = c
        .call(
            Method::POST,
            &format!("apps/{}/secrets", demo::APP_ID),
            None,
        )
        .await;
    assert_eq!(status, 201, "{added}");
    let key = added["key_id"].as_str().unwrap().to_string();
    let (status, fault) = c
        .call(
            Method::POST,
            "faults",
            Some(json!({"target": "graph", "kind": "timeout"})),
        )
        .await;
    assert_eq!(status, 201, "{fault}");
    // Past the new secret's propagation, so its state holds while the calls are made.
    c.call(Method::POST, "clock/advance", Some(json!({"by": "1h"})))
        .await;
    assert_eq!(c.token(added["secret_text"].as_str().unwrap()).await.0, 200);
    let before = c.state().await;
    let calls = refused_calls(&key, fault["id"].as_u64().unwrap());
    for (method, path, body, expected) in &calls {
        let token = *expected != 401;
        let (status, content_type, text) = c.send(method.clone(), path, body, token).await;
        let call = format!("{method} {path} {body}");
        assert_eq!(status, *expected, "{call}: {text}");
        assert_eq!(content_type, "application/problem+json", "{call}: {text}");
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(problem["status"], *expected, "{call}: {text}");
        let after = c.state().await;
        assert_eq!(
            (&after.0, &after.1, &after.3),
            (&before.0, &before.1, &before.3),
            "{call}"
        );
        assert_eq!(after.2["start"], before.2["start"], "{call}");
        let moved = instant(&after.2["now"]) - instant(&before.2["now"]);
        assert!(
            moved >= chrono::TimeDelta::zero() && moved < chrono::TimeDelta::seconds(60),
            "{call}: the clock moved by {moved}"
        );
    }
    assert!(calls.len() > 50, "{}", calls.len());
}

#[tokio::test]
async fn a_method_a_resource_lacks_is_told_the_ones_it_has() {
    let c = control().await;
    let response = c
        .client
        .put(format!("{}/faults", c.control))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, POST, DELETE");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    // A problem without a field or valid words leaves them out, as the document allows.
    let problem: Value = response.json().await.unwrap();
    assert!(problem.get("valid").is_none() && problem.get("field").is_none());
    let doc = c.get("openapi.json").await;
    let required = &doc["components"]["schemas"]["Problem"]["required"];
    assert_eq!(*required, json!(["type", "title", "status", "detail"]));
}
