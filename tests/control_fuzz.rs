//! The control API under Schemathesis, a property-based fuzzer driven by the OpenAPI document
//! the API serves: `maildrill serve` runs in this process (sockets, real time) and the
//! `schemathesis` CLI runs every operation with generated valid and invalid calls, then chains
//! them along the document's links. It checks every answer against the document (status,
//! content type, schema, headers), that no call gets a 5xx, that invalid calls are refused,
//! and this test that no handler panicked.
//!
//! Needs the executable named by `MAILDRILL_SCHEMATHESIS` (pinned in
//! `tests/python/requirements.txt`). CI installs it and sets `MAILDRILL_REQUIRE_CLIENTS=1`, so
//! a missing one fails there; elsewhere this test says so and stops. `MAILDRILL_FUZZ_SEED`
//! picks another seed (default 1) to explore further.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use maildrill::serve::{ServeOptions, Served};

/// Calls per operation and phase: enough to reach every refusal, and the run stays well under
/// a minute.
const MAX_EXAMPLES: u32 = 25;

/// Panics anywhere in this process (serve's handlers run here) since the hook was set.
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// The Schemathesis executable; when there is none, fail in CI and explain elsewhere.
fn schemathesis() -> Option<String> {
    let found = std::env::var("MAILDRILL_SCHEMATHESIS").ok().filter(|exe| {
        Command::new(exe)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("MAILDRILL_REQUIRE_CLIENTS").is_none(),
            "MAILDRILL_SCHEMATHESIS names no runnable schemathesis, required here \
             (MAILDRILL_REQUIRE_CLIENTS is set)"
        );
        eprintln!(
            "skipping: MAILDRILL_SCHEMATHESIS names no runnable schemathesis (pip install -r \
             tests/python/requirements.txt, then set it to the venv's bin/schemathesis)"
        );
    }
    found
}

/// The run's settings. Secrets stay in the environment (`${...}`), out of the file and the
/// command line. The dictionaries give the fuzzer the demo tenant's app and mailbox and some
/// durations some of the time, so calls reach past the lookups and the duration parser.
fn config(served: &Served, seed: u64) -> String {
    let (app, mailbox) = (
        served.env.get("MAILDRILL_CLIENT_ID").unwrap(),
        served.env.get("MAILDRILL_MAILBOX").unwrap(),
    );
    format!(
        r#"base-url = "${{MAILDRILL_CONTROL_URL}}"
tls-verify = "${{MAILDRILL_CA_CERT}}"
headers = {{ Authorization = "Bearer ${{MAILDRILL_CONTROL_TOKEN}}" }}
seed = {seed}
request-timeout = 10

[generation]
max-examples = {MAX_EXAMPLES}
database = "none"

[checks]
response_schema_conformance.validate-formats = true

[dictionaries]
apps = {{ values = ["{app}"] }}
mailboxes = {{ values = ["{mailbox}"] }}
durations = {{ values = ["1s", "90m", "29d", "400d", "9000y", "300000y"] }}

[parameters]
"path.app" = {{ dictionary = "apps", probability = 0.6 }}
"path.upn" = {{ dictionary = "mailboxes", probability = 0.6 }}
"body.by" = {{ dictionary = "durations", probability = 0.8 }}
"body.lifetime" = {{ dictionary = "durations", probability = 0.8 }}
"body.delay" = {{ dictionary = "durations", probability = 0.8 }}
"body.duration" = {{ dictionary = "durations", probability = 0.8 }}
"#
    )
}

/// Every check but `positive_data_acceptance`: the document cannot say everything a call
/// needs (a secret ends after it starts, a window after it opens, a reply key belongs to its
/// target, a duration parses), so a schema-valid call may rightly be refused.
fn run(exe: &str, dir: &Path, served: &Served) -> Output {
    let seed = std::env::var("MAILDRILL_FUZZ_SEED").map_or(1, |s| s.parse().unwrap());
    let file = dir.join("schemathesis.toml");
    std::fs::write(&file, config(served, seed)).unwrap();
    let env = |key: &str| served.env.get(key).unwrap().to_string();
    Command::new(exe)
        .arg("--config-file")
        .arg(&file)
        .args(["run", "--no-color", "--checks", "all"])
        .args(["--exclude-checks", "positive_data_acceptance"])
        .arg(format!("{}/openapi.json", env("MAILDRILL_CONTROL_URL")))
        .current_dir(dir)
        .env("MAILDRILL_CONTROL_URL", env("MAILDRILL_CONTROL_URL"))
        .env("MAILDRILL_CA_CERT", env("MAILDRILL_CA_CERT"))
        .env("MAILDRILL_CONTROL_TOKEN", env("MAILDRILL_CONTROL_TOKEN"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `text` with `secrets` and every added secret's text (in `POST apps/{app}/secrets`
/// answers) taken out, so a failure shows no credential.
fn redacted(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_string();
    for secret in secrets {
        text = text.replace(secret, "[redacted]");
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("secret_text") {
        let (head, tail) = rest.split_at(at + "secret_text".len());
        let quoting = tail
            .find(|c: char| !matches!(c, '"' | '\\' | ':' | ' '))
            .unwrap_or(tail.len());
        let value = &tail[quoting..];
        let end = value.find(['"', '\\', '\n']).unwrap_or(value.len());
        out.push_str(head);
        out.push_str(&tail[..quoting]);
        out.push_str("[redacted]");
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_control_api_holds_to_its_openapi_document_under_schemathesis() {
    let Some(exe) = schemathesis() else {
        return;
    };
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    let dir: PathBuf = std::env::temp_dir().join(format!("maildrill-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let options = ServeOptions {
        at: Some("2025-02-14T11:00:00Z".parse().unwrap()),
        env_file: dir.join("maildrill.env"),
        ..ServeOptions::default()
    };
    let served = runtime
        .block_on(maildrill::serve::start(
            &options,
            maildrill::serve::real_time_clock,
        ))
        .unwrap();
    let output = run(&exe, &dir, &served);
    let secrets = ["MAILDRILL_CONTROL_TOKEN", "MAILDRILL_CLIENT_SECRET"]
        .map(|key| served.env.get(key).unwrap().to_string());
    let secrets = secrets.each_ref().map(String::as_str);
    let stdout = redacted(&String::from_utf8_lossy(&output.stdout), &secrets);
    let stderr = redacted(&String::from_utf8_lossy(&output.stderr), &secrets);
    runtime.block_on(served.run(async {}));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(output.status.success(), "schemathesis: {stdout}\n{stderr}");
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "serve panicked: {stdout}");
    // The counts: the operations, the phases, the calls made and how long they took.
    let summary = stdout
        .split_once("SUMMARY")
        .map_or(stdout.as_str(), |(_, s)| s);
    eprintln!("schemathesis, the control API against its document:{summary}");
}

#[test]
fn a_failure_shows_no_secret() {
    let text = r#"{"key_id":"k","secret_text":"abc~def"} and "secret_text": "ghi" and tok"#;
    assert_eq!(
        redacted(text, &["tok"]),
        r#"{"key_id":"k","secret_text":"[redacted]"} and "secret_text": "[redacted]" and [redacted]"#
    );
}
