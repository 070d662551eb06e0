//! Microsoft's own Python SDKs (msal, azure-identity, msgraph-sdk) against `maildrill serve`.
//!
//! Serve runs in this process (as `maildrill serve` runs it: sockets, real time) so the test
//! reads what the mocks received: the mailbox's sent items, the directory and the journal. The
//! SDKs run in `tests/python/msft_sdks.py`, which prints one JSON line of what it observed;
//! its `throttled` command and `tests/python/control_drill.py` (a client that keeps sending
//! while the script throttles, expires and rotates its secret) drive serve's control API.
//!
//! Needs a Python with the packages of `tests/python/requirements.txt`, named by
//! `MAILDRILL_PYTHON` (default `python3`). CI installs them in a venv and sets
//! `MAILDRILL_REQUIRE_CLIENTS=1`, so a missing package fails there; elsewhere these tests say
//! so and stop.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use maildrill::mock::HttpMocks;
use maildrill::serve::{ServeOptions, Served};
use maildrill::tenant::{CredentialState, Directory};
use maildrill::{JournalEntry, MockName};
use serde_json::{Value, json};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/msft_sdks.py");
const DRILL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/control_drill.py");
const EXPIRED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/python/expired-secret.toml"
);

/// `maildrill serve` in this process, on its own multi-thread runtime in real time.
struct InProcess {
    runtime: tokio::runtime::Runtime,
    served: Option<Served>,
    dir: PathBuf,
}

impl InProcess {
    fn start(name: &str, scenario: Option<&str>) -> InProcess {
        let dir = std::env::temp_dir().join(format!("maildrill-py-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let options = ServeOptions {
            at: Some("2025-02-14T11:00:00Z".parse().unwrap()),
            env_file: dir.join("maildrill.env"),
            scenario: scenario.map(PathBuf::from),
            ..ServeOptions::default()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let served = runtime
            .block_on(maildrill::serve::start(
                &options,
                maildrill::serve::real_time_clock,
            ))
            .unwrap();
        InProcess {
            runtime,
            served: Some(served),
            dir,
        }
    }

    fn served(&self) -> &Served {
        self.served.as_ref().unwrap()
    }

    fn mocks(&self) -> &HttpMocks {
        &self.served().mocks
    }

    fn env(&self, key: &str) -> String {
        let env = &self.served().env;
        env.get(key).unwrap().to_string()
    }

    fn journal(&self, mock: MockName, operation: &str) -> Vec<JournalEntry> {
        let entries = self.mocks().journal().entries();
        entries
            .into_iter()
            .filter(|e| e.mock == mock && e.operation == operation)
            .collect()
    }

    /// Runs one command of the SDK script on serve's env file; its JSON line.
    fn run(&self, python: &str, command: &str) -> Value {
        self.run_script(python, &[SCRIPT, command])
    }

    /// Runs a script (`args`, then serve's env file); its JSON line.
    fn run_script(&self, python: &str, args: &[&str]) -> Value {
        let output = Command::new(python)
            .args(args)
            .arg(self.dir.join("maildrill.env"))
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        // Checked before anything is shown, so a failure never prints a credential.
        let printed = format!("{stdout}{stderr}");
        for key in ["MAILDRILL_CLIENT_SECRET", "MAILDRILL_CONTROL_TOKEN"] {
            assert!(
                !printed.contains(&self.env(key)),
                "the script printed {key}"
            );
        }
        assert!(
            !self.prints_a_secret(&printed),
            "the script printed a secret"
        );
        let name = args.last().unwrap();
        assert!(output.status.success(), "{name}: {printed}");
        serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{name} printed no JSON line ({e}): {stdout}"))
    }

    /// Whether a word of `text` is the value of one of the app's secrets (those added while the
    /// script ran included).
    fn prints_a_secret(&self, text: &str) -> bool {
        let directory = Directory::lock(self.mocks().directory());
        let tenant = self.env("MAILDRILL_TENANT_ID");
        let app = directory
            .app(&tenant, &self.env("MAILDRILL_CLIENT_ID"))
            .unwrap();
        let secret_char = |c: char| c.is_ascii_alphanumeric() || "~._-".contains(c);
        text.split(|c: char| !secret_char(c))
            .filter(|word| word.len() >= 16)
            .any(|word| app.credentials.iter().any(|c| c.matches(word)))
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(served) = self.served.take() {
            self.runtime.block_on(served.run(async {}));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn msal_acquires_a_graph_token_then_serves_it_from_its_cache() {
    let Some(python) =
        common::python::python_with(&["msal", "requests", "azure.identity", "msgraph"])
    else {
        return;
    };
    let serve = InProcess::start("msal", None);
    let seen = serve.run(&python, "msal");
    assert_eq!(seen["token_type"], "Bearer", "{seen}");
    assert_eq!(seen["expires_in_positive"], Value::Bool(true), "{seen}");
    assert_eq!(seen["first_source"], "identity_provider", "{seen}");
    assert_eq!(seen["second_source"], "cache", "{seen}");
    assert_eq!(seen["aud"], "https://graph.microsoft.com", "{seen}");
    assert_eq!(seen["tid"], serve.env("MAILDRILL_TENANT_ID"), "{seen}");
    assert!(
        seen["roles"]
            .as_array()
            .unwrap()
            .contains(&"Mail.Send".into()),
        "{seen}"
    );
    // msal read the discovery document, asked once, and kept the token.
    let tokens = serve.journal(MockName::Entra, "token");
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(tokens[0].status, Some(200), "{tokens:?}");
    assert!(!serve.journal(MockName::Entra, "discovery").is_empty());
}

/// Puts `n` messages in the demo mailbox's inbox for the delta sync; their internetMessageIds.
fn deliver(serve: &InProcess, n: usize) -> Vec<String> {
    let now = serve.mocks().clock().now_utc();
    let (tenant, upn) = (
        serve.env("MAILDRILL_TENANT_ID"),
        serve.env("MAILDRILL_MAILBOX"),
    );
    let mut directory = Directory::lock(serve.mocks().directory());
    (0..n)
        .map(|i| {
            let id = directory.next_message_id();
            let mailbox = directory.mailbox_mut(&tenant, &upn).unwrap();
            let from = format!("sender{i}@example.com");
            let message = mailbox.deliver(id, now, &from, &format!("inbound {i}"));
            message.internet_message_id.clone()
        })
        .collect()
}

#[test]
fn msgraph_sdk_sends_mail_syncs_the_inbox_and_rotates_a_secret() {
    let Some(python) =
        common::python::python_with(&["msal", "requests", "azure.identity", "msgraph"])
    else {
        return;
    };
    let serve = InProcess::start("graph", None);
    let inbound = deliver(&serve, 3);
    let seen = serve.run(&python, "graph");
    // Three messages at two a page (`Prefer: odata.maxpagesize=2`): a nextLink, then the
    // deltaLink, which has nothing new.
    let delta = &seen["delta"];
    assert_eq!(delta["messages"], 3, "{seen}");
    assert_eq!(delta["pages"], 2, "{seen}");
    assert_eq!(delta["internet_message_ids"], serde_json::json!(inbound));
    assert_eq!(delta["after_delta_link"]["messages"], 0, "{seen}");
    assert_sent_by_graph(&serve, &seen["send_mail"]);
    assert_applications(&serve, &seen["application"]);
    // Every Graph call succeeded: two delta pages, the delta link, sendMail, the applications.
    let graph: Vec<_> = serve
        .mocks()
        .journal()
        .entries()
        .into_iter()
        .filter(|e| e.mock == MockName::Graph)
        .collect();
    assert_eq!(graph.len(), 9, "{graph:?}");
    assert!(
        graph
            .iter()
            .all(|e| e.status.is_some_and(|s| (200..300).contains(&s))),
        "{graph:?}"
    );
}

/// The sendMail msgraph-sdk made is in the mailbox's sent items with the script's ids, and in
/// the journal as a 202.
fn assert_sent_by_graph(serve: &InProcess, seen: &Value) {
    let (tenant, upn) = (
        serve.env("MAILDRILL_TENANT_ID"),
        serve.env("MAILDRILL_MAILBOX"),
    );
    {
        let directory = Directory::lock(serve.mocks().directory());
        let sent: Vec<_> = directory.mailbox(&tenant, &upn).unwrap().sent().collect();
        assert_eq!(sent.len(), 1, "{sent:?}");
        let message = sent[0];
        assert_eq!(message.via, maildrill::tenant::SentVia::Graph);
        assert_eq!(
            message.message_id.as_deref(),
            seen["message_id"].as_str(),
            "{seen}"
        );
        assert_eq!(
            message.idempotency_key.as_deref(),
            seen["idempotency_key"].as_str()
        );
        assert_eq!(message.subject, "maildrill msgraph-sdk probe");
        assert_eq!(message.to, ["customer@example.com"]);
        assert_eq!(message.from, upn);
    }
    let sends = serve.journal(MockName::Graph, "send-mail");
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0].status, Some(202), "{sends:?}");
}

/// The applications API as msgraph-sdk read it matches the directory; the secret it added was
/// removed again.
fn assert_applications(serve: &InProcess, seen: &Value) {
    let client_id = serve.env("MAILDRILL_CLIENT_ID");
    assert_eq!(seen["app_id"], client_id.as_str(), "{seen}");
    assert_eq!(seen["display_name"], "Mailman", "{seen}");
    let listed = seen["password_credentials"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{seen}");
    assert_eq!(listed[0]["display_name"], "mailman-prod", "{seen}");
    // The demo secret: valid from a day before the start (2025-02-14T11:00Z), for a year.
    let end = listed[0]["end"].as_str().unwrap();
    assert!(end.starts_with("2026-02-13T11:00:00"), "{seen}");
    assert_eq!(
        seen["add_password"]["display_name"], "msgraph-sdk-probe",
        "{seen}"
    );
    assert_eq!(seen["add_password"]["end_offset_seconds"], 0, "{seen}");
    assert_eq!(seen["credentials_after_remove"], 1, "{seen}");
    let directory = Directory::lock(serve.mocks().directory());
    let app = directory
        .app(&serve.env("MAILDRILL_TENANT_ID"), &client_id)
        .unwrap();
    let keys: Vec<&str> = app.credentials.iter().map(|c| c.key_id.as_str()).collect();
    assert_eq!(keys, [listed[0]["key_id"].as_str().unwrap()]);
    for operation in ["add-password", "remove-password"] {
        let entries = serve.journal(MockName::Graph, operation);
        assert_eq!(entries.len(), 1, "{operation}: {entries:?}");
    }
}

#[test]
fn an_expired_secret_reaches_every_sdk_as_aadsts7000222() {
    let Some(python) =
        common::python::python_with(&["msal", "requests", "azure.identity", "msgraph"])
    else {
        return;
    };
    let serve = InProcess::start("expired", Some(EXPIRED));
    let seen = serve.run(&python, "expired");
    assert_eq!(seen["msal"]["error"], "invalid_client", "{seen}");
    assert_eq!(seen["msal"]["error_codes"], serde_json::json!([7000222]));
    for part in ["msal", "azure_identity", "msgraph_send_mail"] {
        assert_eq!(seen[part]["aadsts"], "AADSTS7000222", "{part}: {seen}");
    }
    assert_eq!(
        seen["azure_identity"]["exception"], "ClientAuthenticationError",
        "{seen}"
    );
    assert_eq!(
        seen["msgraph_send_mail"]["exception"], "ClientAuthenticationError",
        "{seen}"
    );
    // Every token request was refused; without a token the SDK never reached Graph.
    let tokens = serve.journal(MockName::Entra, "token");
    assert!(tokens.len() >= 3, "{tokens:?}");
    assert!(tokens.iter().all(|e| e.status == Some(401)), "{tokens:?}");
    assert!(serve.journal(MockName::Graph, "send-mail").is_empty());
}

/// The milliseconds between consecutive journal entries, by the mocks' clock.
fn gaps(entries: &[JournalEntry]) -> Vec<i64> {
    entries
        .windows(2)
        .map(|w| (w[1].at - w[0].at).num_milliseconds())
        .collect()
}

fn statuses(entries: &[JournalEntry]) -> Vec<Option<u16>> {
    entries.iter().map(|e| e.status).collect()
}

#[test]
fn throttled_sdks_wait_out_retry_after_then_surface_what_they_can() {
    let Some(python) =
        common::python::python_with(&["msal", "requests", "azure.identity", "msgraph"])
    else {
        return;
    };
    let serve = InProcess::start("throttled", None);
    let seen = serve.run(&python, "throttled");
    assert_graph_throttled(&serve, &seen["graph"]);
    assert_entra_throttled(&serve, &seen["entra"]);
    // msgraph-sdk hands its caller the 429 and its Retry-After; msal and azure-identity,
    // meeting Entra's plain-text 429, neither.
    let surfaces = &seen["surfaces"];
    assert_eq!(surfaces["msgraph_sdk"]["status"], 429, "{surfaces}");
    assert_eq!(surfaces["msgraph_sdk"]["retry_after"], "1", "{surfaces}");
    for sdk in ["msal", "azure_identity"] {
        assert_eq!(
            surfaces[sdk]["hidden"],
            json!(["status", "retry_after"]),
            "{sdk}: {surfaces}"
        );
    }
    assert!(serve.mocks().fault_list().is_empty(), "faults left behind");
}

/// kiota's RetryHandler waited `Retry-After: 1` before each retry: one 429 then the 202, then
/// a 429 and its three retries, after which msgraph-sdk raised ODataError.
fn assert_graph_throttled(serve: &InProcess, seen: &Value) {
    assert_eq!(seen["max_retries"], 3, "{seen}");
    assert_eq!(seen["retried_once"]["sent"], true, "{seen}");
    let error = &seen["retries_exhausted"]["error"];
    assert_eq!(error["exception"], "ODataError", "{seen}");
    assert_eq!(error["response_status_code"], 429, "{seen}");
    assert_eq!(error["retry_after_header"], "1", "{seen}");
    assert_eq!(error["error_code"], "TooManyRequests", "{seen}");
    // kiota's APIError.message stays None; Graph's text is on .error.message.
    assert_eq!(error["message"], Value::Null, "{seen}");
    assert_eq!(
        error["error_message"], "The server is busy. Please try again later.",
        "{seen}"
    );
    let sends = serve.journal(MockName::Graph, "send-mail");
    assert_eq!(
        statuses(&sends),
        [429, 202, 429, 429, 429, 429].map(Some),
        "{sends:?}"
    );
    let faults: Vec<_> = sends.iter().map(|e| e.fault.as_deref()).collect();
    assert_eq!(faults[..2], [Some("respond mailbox_concurrency"), None]);
    assert!(
        faults[2..]
            .iter()
            .all(|f| *f == Some("respond too_many_requests"))
    );
    let retry_after: Vec<_> = sends.iter().map(|e| e.facts.retry_after).collect();
    assert_eq!(
        retry_after,
        [Some(1), None, Some(1), Some(1), Some(1), Some(1)]
    );
    for run in [&sends[..2], &sends[2..]] {
        assert!(gaps(run).iter().all(|g| *g >= 1000), "{:?}", gaps(run));
    }
    let directory = Directory::lock(serve.mocks().directory());
    let mailbox = directory
        .mailbox(
            &serve.env("MAILDRILL_TENANT_ID"),
            &serve.env("MAILDRILL_MAILBOX"),
        )
        .unwrap();
    let sent: Vec<_> = mailbox.sent().map(|m| m.message_id.as_deref()).collect();
    assert_eq!(sent, [seen["retried_once"]["message_id"].as_str()]);
}

/// msal raises JSONDecodeError on Entra's plain-text 429 and keeps it for its Retry-After (its
/// second call stays local); azure-identity retries after Retry-After, then raises
/// ClientAuthenticationError without a status or a response.
fn assert_entra_throttled(serve: &InProcess, seen: &Value) {
    let msal = &seen["msal"];
    for call in msal["calls"].as_array().unwrap() {
        assert_eq!(call["raised"], "JSONDecodeError", "{msal}");
        assert_eq!(call["is_value_error"], true, "{msal}");
        assert_eq!(call["body"], "Too Many Requests", "{msal}");
        assert_eq!(call["status_exposed"], false, "{msal}");
    }
    assert_eq!(msal["wire"]["statuses"], json!([429]), "{msal}");
    let identity = &seen["azure_identity"];
    for part in ["no_retries", "retried"] {
        let error = &identity[part];
        assert_eq!(error["raised"], "ClientAuthenticationError", "{identity}");
        assert_eq!(error["cause"], "JSONDecodeError", "{identity}");
        assert_eq!(error["status_code"], Value::Null, "{identity}");
        assert_eq!(error["response"], false, "{identity}");
        assert_eq!(error["retry_after_header"], Value::Null, "{identity}");
    }
    assert_eq!(identity["no_retries"]["wire"]["statuses"], json!([429]));
    // azure-core's RetryPolicy: three retries of a 429 (retry_status), each after Retry-After.
    assert_eq!(
        identity["retried"]["wire"]["statuses"],
        json!([429, 429, 429, 429])
    );
    // Two tokens for the Graph part (a credential each), then msal's one request for its two
    // calls, azure-identity's one without retries, and its four; each 429 with the
    // Retry-After the script asked for.
    let tokens = serve.journal(MockName::Entra, "token");
    let mut expected = vec![Some(200); 2];
    expected.extend([Some(429); 6]);
    assert_eq!(statuses(&tokens), expected, "{tokens:?}");
    let throttled = &tokens[2..];
    assert!(
        throttled
            .iter()
            .all(|e| e.fault.as_deref() == Some("respond throttled"))
    );
    let retry_after: Vec<_> = throttled.iter().map(|e| e.facts.retry_after).collect();
    assert_eq!(retry_after, [7, 7, 1, 1, 1, 1].map(Some));
    assert!(
        gaps(&throttled[2..]).iter().all(|g| *g >= 1000),
        "{throttled:?}"
    );
}

#[test]
fn a_client_rides_out_throttling_and_a_rotation_driven_through_the_control_api() {
    let Some(python) =
        common::python::python_with(&["msal", "requests", "azure.identity", "msgraph"])
    else {
        return;
    };
    let serve = InProcess::start("drill", None);
    let seen = serve.run_script(&python, &[DRILL]);
    let story = json!(["200", "429", "200", "401 AADSTS7000222", "200"]);
    assert_eq!(seen["token_story"], story, "{seen}");
    let client = &seen["client"];
    assert!(
        client["sent_after_rotation"].as_u64().unwrap() >= 3,
        "{seen}"
    );
    // msal answered most of the client's calls in the window from its copy of the 429.
    let throttle = &seen["phases"]["throttle"];
    assert!(throttle["wire_429s"].as_u64().unwrap() >= 1, "{seen}");
    assert!(throttle["client_failures"].as_u64() >= throttle["wire_429s"].as_u64());
    let ids: Vec<&str> = seen["message_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(client["sent"], ids.len(), "{seen}");
    assert_drill_mail(&serve, &ids);
    assert_drill_tokens(&serve, &story, throttle);
    assert_drill_secrets(&serve, &seen["phases"]);
    assert!(serve.mocks().fault_list().is_empty(), "faults left behind");
}

/// Every message the client reported sent is in the mailbox once, in order, and Graph
/// accepted nothing else.
fn assert_drill_mail(serve: &InProcess, ids: &[&str]) {
    {
        let directory = Directory::lock(serve.mocks().directory());
        let mailbox = directory
            .mailbox(
                &serve.env("MAILDRILL_TENANT_ID"),
                &serve.env("MAILDRILL_MAILBOX"),
            )
            .unwrap();
        let sent: Vec<_> = mailbox
            .sent()
            .map(|m| m.message_id.as_deref().unwrap_or_default())
            .collect();
        assert_eq!(sent, ids);
    }
    let sends = serve.journal(MockName::Graph, "send-mail");
    let accepted = sends.iter().filter(|e| e.status == Some(202)).count();
    assert_eq!(accepted, ids.len(), "{sends:?}");
    // Each refusal was the old token after a clock jump: one per jump.
    let refused: Vec<_> = sends.iter().filter(|e| e.status != Some(202)).collect();
    assert!(
        refused.len() <= 2 && refused.iter().all(|e| e.status == Some(401)),
        "{refused:?}"
    );
}

/// The token journal: 200, the injected 429s, 200, 401 AADSTS7000222 (expired, then the new
/// secret propagating), 200.
fn assert_drill_tokens(serve: &InProcess, story: &Value, throttle: &Value) {
    let tokens = serve.journal(MockName::Entra, "token");
    let mut told: Vec<String> = Vec::new();
    for entry in &tokens {
        let body = entry.response_body.to_string();
        let word = match entry.status {
            Some(401) if body.contains("AADSTS7000222") => "401 AADSTS7000222".to_string(),
            status => status.map_or_else(|| "none".to_string(), |s| s.to_string()),
        };
        if told.last() != Some(&word) {
            told.push(word);
        }
    }
    assert_eq!(json!(told), *story, "{tokens:?}");
    let throttled: Vec<_> = tokens.iter().filter(|e| e.status == Some(429)).collect();
    assert_eq!(json!(throttled.len()), throttle["wire_429s"]);
    assert!(
        throttled
            .iter()
            .all(|e| e.fault.as_deref() == Some("respond throttled"))
    );
}

/// The old secret expired, the rotated one is valid.
fn assert_drill_secrets(serve: &InProcess, phases: &Value) {
    let now = serve.mocks().clock().now_utc();
    let directory = Directory::lock(serve.mocks().directory());
    let tenant = serve.env("MAILDRILL_TENANT_ID");
    let propagation = directory
        .tenant(&tenant)
        .unwrap()
        .settings
        .propagation_delay;
    let app = directory
        .app(&tenant, &serve.env("MAILDRILL_CLIENT_ID"))
        .unwrap();
    let state = |key: &Value| {
        let key = key.as_str().unwrap();
        let credential = app.credentials.iter().find(|c| c.key_id == key).unwrap();
        credential.state_at(now, propagation)
    };
    assert_eq!(app.credentials.len(), 2);
    assert_eq!(state(&phases["expired_key"]), CredentialState::Expired);
    assert_eq!(state(&phases["rotated_key"]), CredentialState::Valid);
}

#[test]
fn msal_connects_a_customer_user_by_authorization_code_and_refreshes_until_the_secret_expires() {
    let Some(python) = common::python::python_with(&["msal", "requests"]) else {
        return;
    };
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/delegated.toml");
    let serve = InProcess::start("delegated", Some(scenario));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/delegated_msal.py"
    );
    let seen = serve.run_script(&python, &[script]);
    assert_eq!(seen["state"], "state-1", "{seen}");
    assert_eq!(seen["session_state"], true, "{seen}");
    assert_eq!(seen["code_redeemed"], true, "{seen}");
    let customer = serve.mocks().directory().clone();
    let tid = Directory::lock(&customer)
        .user_tenant("alice@fabrikam.onmicrosoft.com")
        .unwrap()
        .to_string();
    assert_eq!(seen["id_token"]["tid"], tid.as_str(), "{seen}");
    assert_eq!(
        seen["id_token"]["preferred_username"], "alice@fabrikam.onmicrosoft.com",
        "{seen}"
    );
    assert_eq!(
        seen["id_token"]["aud"],
        serve.env("MAILDRILL_CLIENT_ID"),
        "{seen}"
    );
    assert_eq!(seen["id_token_iss_is_tenants"], true, "{seen}");
    assert_eq!(seen["refresh_rotated"], true, "{seen}");
    // msal carries Entra's app-level refusal up unchanged, and the refresh token outlives the
    // secret: it works again with the new one (it belongs to the client id).
    assert_eq!(
        seen["expired"],
        json!({"error": "invalid_client", "code": "AADSTS7000222"}),
        "{seen}"
    );
    assert_eq!(seen["after_rotation"], true, "{seen}");
    // The control API's tenant and user events, as msal meets them.
    let disabled = json!({"error": "unauthorized_client", "code": "AADSTS7000112"});
    assert_eq!(seen["disabled"], disabled, "{seen}");
    let revoked = json!({"error": "invalid_grant", "code": "AADSTS50173", "suberror": "bad_token"});
    assert_eq!(seen["revoked"], revoked, "{seen}");
}
