//! Microsoft's own Python SDKs (msal, azure-identity, msgraph-sdk) against `maildrill serve`.
//!
//! Serve runs in this process (as `maildrill serve` runs it: sockets, real time) so the test
//! reads what the mocks received: the mailbox's sent items, the directory and the journal. The
//! SDKs run in `tests/python/msft_sdks.py`, which prints one JSON line of what it observed.
//!
//! Needs a Python with the packages of `tests/python/requirements.txt`, named by
//! `MAILDRILL_PYTHON` (default `python3`). CI installs them in a venv and sets
//! `MAILDRILL_REQUIRE_CLIENTS=1`, so a missing package fails there; elsewhere these tests say
//! so and stop.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use maildrill::mock::HttpMocks;
use maildrill::serve::{ServeOptions, Served};
use maildrill::tenant::Directory;
use maildrill::{JournalEntry, MockName};
use serde_json::Value;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/msft_sdks.py");
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
        env.iter().find(|(k, _)| k == key).unwrap().1.clone()
    }

    fn journal(&self, mock: MockName, operation: &str) -> Vec<JournalEntry> {
        let entries = self.mocks().journal().entries();
        entries
            .into_iter()
            .filter(|e| e.mock == mock && e.operation == operation)
            .collect()
    }

    /// Runs one command of the script on serve's env file; its JSON line.
    fn run(&self, python: &str, command: &str) -> Value {
        let output = Command::new(python)
            .args([SCRIPT, command])
            .arg(self.dir.join("maildrill.env"))
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        // Checked before anything is shown, so a failure never prints the secret.
        let secret = self.env("MAILDRILL_CLIENT_SECRET");
        assert!(
            !stdout.contains(&secret) && !stderr.contains(&secret),
            "the script printed the client secret"
        );
        assert!(output.status.success(), "{command}: {stdout}{stderr}");
        serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{command} printed no JSON line ({e}): {stdout}"))
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

/// The Python to run the SDKs with, if it has them; when it does not, fail in CI and explain
/// elsewhere.
fn python_with_sdks() -> Option<String> {
    let python = std::env::var("MAILDRILL_PYTHON").unwrap_or_else(|_| "python3".into());
    let found = Command::new(&python)
        .args(["-c", "import msal, requests, azure.identity, msgraph"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("MAILDRILL_REQUIRE_CLIENTS").is_none(),
            "{python} lacks msal, azure-identity or msgraph-sdk, required here \
             (MAILDRILL_REQUIRE_CLIENTS is set)"
        );
        eprintln!(
            "skipping: {python} lacks msal, azure-identity or msgraph-sdk (pip install -r \
             tests/python/requirements.txt, then set MAILDRILL_PYTHON)"
        );
    }
    found.then_some(python)
}

#[test]
fn msal_acquires_a_graph_token_then_serves_it_from_its_cache() {
    let Some(python) = python_with_sdks() else {
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
    let Some(python) = python_with_sdks() else {
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
    let Some(python) = python_with_sdks() else {
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
