//! `maildrill serve` as clients in other languages meet it: Python's smtplib sends with
//! STARTTLS + XOAUTH2, and swaks (which has no XOAUTH2) gets Office 365's refusals.
//!
//! Needs `python3` and `swaks` (Debian: `apt-get install swaks libnet-ssleay-perl`). CI sets
//! `MAILDRILL_REQUIRE_CLIENTS=1` after installing them, so a missing tool fails there; on a
//! machine without them these tests say so and stop.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use std::process::{Command, Stdio};

use common::serve::ServeProcess;

fn serve(name: &str) -> ServeProcess {
    let served = ServeProcess::start(name, &["--at", "2025-02-14T11:00:00Z"]);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(served.env_file())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    served
}

/// Whether `tool` runs; when it does not, fail in CI and explain elsewhere.
fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("MAILDRILL_REQUIRE_CLIENTS").is_none(),
            "{tool} is required here (MAILDRILL_REQUIRE_CLIENTS is set) but not installed"
        );
        eprintln!(
            "skipping: {tool} is not installed (Debian: apt-get install swaks libnet-ssleay-perl)"
        );
    }
    found
}

#[test]
fn python_smtplib_sends_with_starttls_and_xoauth2() {
    if !have("python3") {
        return;
    }
    let served = serve("smtplib");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/smtplib_xoauth2.py"
    );
    let output = Command::new("python3")
        .arg(script)
        .envs(&served.env)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout,
        "{}\n(221, b'2.0.0 Service closing transmission channel')\n"
    );
}

fn swaks(served: &ServeProcess, extra: &[&str]) -> String {
    let env = &served.env;
    let output = Command::new("swaks")
        .args([
            "-4",
            "--server",
            &env["MAILDRILL_SMTP_HOST"],
            "--port",
            &env["MAILDRILL_SMTP_PORT"],
        ])
        .args([
            "--from",
            &env["MAILDRILL_MAILBOX"],
            "--to",
            "customer@example.com",
            "--helo",
            "client.local",
        ])
        .args(extra)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn swaks_without_auth_gets_530_5_7_57() {
    if !have("swaks") {
        return;
    }
    let served = serve("swaks-noauth");
    let transcript = swaks(&served, &[]);
    assert!(
        transcript.contains("<** 530 5.7.57 Client not authenticated to send mail."),
        "{transcript}"
    );
    assert!(
        transcript.contains("250-STARTTLS") && !transcript.contains("AUTH LOGIN"),
        "{transcript}"
    );
}

#[test]
fn swaks_auth_login_gets_535_5_7_139() {
    if !have("swaks") {
        return;
    }
    let served = serve("swaks-login");
    let ca = served.env["MAILDRILL_CA_CERT"].clone();
    let transcript = swaks(
        &served,
        &[
            "--tls",
            "--tls-ca-path",
            &ca,
            "--auth",
            "LOGIN",
            "--auth-user",
            "u",
            "--auth-password",
            "p",
        ],
    );
    assert!(
        transcript.contains("250-AUTH LOGIN XOAUTH2"),
        "{transcript}"
    );
    assert!(
        transcript
            .contains("535 5.7.139 Authentication unsuccessful, basic authentication is disabled."),
        "{transcript}"
    );
}

#[test]
fn the_env_file_holds_every_contract_key_and_the_alert_sink_answers() {
    let served = serve("env");
    for key in [
        "MAILDRILL_TENANT_ID",
        "MAILDRILL_CLIENT_ID",
        "MAILDRILL_CLIENT_SECRET",
        "MAILDRILL_MAILBOX",
        "MAILDRILL_CA_CERT",
        "MAILDRILL_AUTHORITY",
        "MAILDRILL_TOKEN_URL",
        "MAILDRILL_GRAPH_URL",
        "MAILDRILL_SMTP_HOST",
        "MAILDRILL_SMTP_PORT",
        "MAILDRILL_ALERTS_URL",
    ] {
        assert!(
            served.env.contains_key(key),
            "{key} missing: {:?}",
            served.env
        );
    }
    if !have("python3") {
        return;
    }
    // A PagerDuty Events v2 trigger, as any client posts it, over HTTPS with the CA.
    let script = r#"
import json, os, ssl, urllib.request
context = ssl.create_default_context(cafile=os.environ["MAILDRILL_CA_CERT"])
event = {"routing_key": "r", "event_action": "trigger", "dedup_key": "k",
         "payload": {"summary": "mail stalled", "source": "app", "severity": "critical"}}
request = urllib.request.Request(os.environ["MAILDRILL_ALERTS_URL"], data=json.dumps(event).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
with urllib.request.urlopen(request, context=context) as response:
    print(response.status, json.load(response)["status"])
"#;
    let output = Command::new("python3")
        .args(["-c", script])
        .envs(&served.env)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "202 success\n",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
