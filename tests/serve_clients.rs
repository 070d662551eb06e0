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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

struct Serve {
    child: Child,
    dir: PathBuf,
    env: BTreeMap<String, String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn serve(name: &str) -> Serve {
    let dir = std::env::temp_dir().join(format!("maildrill-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let env_file = dir.join("maildrill.env");
    let child = Command::new(env!("CARGO_BIN_EXE_maildrill"))
        .args(["serve", "--at", "2025-02-14T11:00:00Z", "--env-file"])
        .arg(&env_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = child;
    // serve prints its addresses once it listens; the env file is written before that.
    use std::io::BufRead as _;
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("maildrill serve:"), "{first}");
    // Keep reading so serve never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let text = std::fs::read_to_string(&env_file).unwrap();
    let env = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    Serve { child, dir, env }
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

fn swaks(served: &Serve, extra: &[&str]) -> String {
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
