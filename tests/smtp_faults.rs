//! Every SMTP fault as a full transcript on the virtual clock, snapshotted: what the client
//! sends, what it hears and when, and whether the message was stored.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::smtp::Client;
use common::*;
use maildrill::fault::{Activation, CatalogueReply, Fault, FaultKind, Target};
use maildrill::journal::Journal;
use maildrill::mock::smtp::{SmtpConfig, SmtpServer};
use maildrill::seed::Seed;
use maildrill::tenant::{Directory, Resource, demo};
use maildrill::time::replay_runtime;
use maildrill::wiring::memory::MemorySmtp;

fn setup(seed: u64) -> (Sim, SmtpServer) {
    let sim = Sim::new(
        at("2025-02-14T11:00:00Z"),
        tenant(at("2025-03-01T00:00:00Z")),
        seed,
    );
    // No TLS here, so AUTH is open on the plain session and transcripts stay readable.
    let config = SmtpConfig {
        seed: Seed(seed),
        ..SmtpConfig::default()
    };
    let server = SmtpServer::new(
        sim.mocks.directory().clone(),
        sim.clock.clone(),
        Journal::new(),
        config,
    )
    .with_faults(sim.mocks.faults_handle());
    (sim, server)
}

/// Connects, authenticates and sends one message, writing the transcript.
async fn session(sim: &Sim, server: &SmtpServer) -> Vec<String> {
    let now = sim.clock.now_utc();
    let token = Directory::lock(sim.mocks.directory())
        .issue_token(demo::TENANT_ID, demo::APP_ID, Resource::Exchange, now)
        .unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!(
        "user={}\x01auth=Bearer {}\x01\x01",
        demo::MAILBOX,
        token.value
    ));
    let smtp = MemorySmtp::new(server.clone());
    let mut client = Client::new(sim, smtp.connect());
    client.reply().await;
    client.command("EHLO client.example").await;
    client.command(&format!("AUTH XOAUTH2 {auth}")).await;
    client
        .command(&format!("MAIL FROM:<{}>", demo::MAILBOX))
        .await;
    client.command("RCPT TO:<customer@example.com>").await;
    client.command("DATA").await;
    client.send("Subject: fault test").await;
    client.send("").await;
    client.send("hello").await;
    client.command(".").await;
    client.command("QUIT").await;
    let stored = Directory::lock(sim.mocks.directory())
        .mailbox(demo::TENANT_ID, demo::MAILBOX)
        .unwrap()
        .sent()
        .len();
    client.transcript.push(format!("stored messages: {stored}"));
    client.transcript
}

fn snapshot(name: &str, transcript: &[String]) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../fixtures/snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(name, transcript.join("\n")));
}

fn fault(operation: &str, kind: FaultKind) -> Fault {
    Fault {
        target: Target::Smtp,
        operation: Some(operation.into()),
        kind,
        activation: Activation::default(),
    }
}

fn respond(key: &str) -> FaultKind {
    FaultKind::Respond {
        reply: CatalogueReply::parse(Target::Smtp, key).unwrap(),
        retry_after: None,
    }
}

fn run(name: &str, faults: Vec<Fault>) -> Vec<String> {
    let transcript = replay_runtime().unwrap().block_on(async {
        let (sim, server) = setup(31);
        for fault in faults {
            server.inject(fault).unwrap();
        }
        session(&sim, &server).await
    });
    snapshot(&format!("smtp_fault__{name}"), &transcript);
    transcript
}

#[test]
fn happy_path() {
    let transcript = run("none", vec![]);
    assert_eq!(transcript.last().unwrap(), "stored messages: 1");
}

#[test]
fn service_unavailable_at_connect_closes() {
    let transcript = run(
        "421_at_connect",
        vec![fault("connect", respond("service_unavailable"))],
    );
    assert!(transcript[0].ends_with("S: 421 4.3.2 Service not available"));
    assert!(
        transcript[1..]
            .iter()
            .any(|l| l.ends_with("<write failed>") || l.ends_with("<connection closed>")),
        "{transcript:#?}"
    );
}

#[test]
fn reply_override_at_rcpt() {
    let transcript = run(
        "rcpt_432",
        vec![fault("rcpt", respond("sender_thread_limit"))],
    );
    assert!(transcript.iter().any(|l| l.contains("S: 432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded")));
    assert_eq!(transcript.last().unwrap(), "stored messages: 0");
}

#[test]
fn latency_at_mail_moves_the_virtual_clock() {
    let transcript = run(
        "latency_mail_45s",
        vec![fault(
            "mail",
            FaultKind::Latency {
                delay: Duration::from_secs(45),
            },
        )],
    );
    assert!(
        transcript
            .iter()
            .any(|l| l.starts_with("11:00:45Z S: 250 2.1.0 Sender OK")),
        "{transcript:#?}"
    );
}

/// A hang after the final dot loses the reply, not the message: the server has it.
#[test]
fn hang_at_end_of_data_times_the_client_out() {
    let transcript = run(
        "timeout_end_of_data",
        vec![fault("end-of-data", FaultKind::Timeout)],
    );
    assert!(
        transcript
            .iter()
            .any(|l| l == "11:01:00Z S: <no reply within 60s>"),
        "{transcript:#?}"
    );
    assert_eq!(transcript.last().unwrap(), "stored messages: 1");
}

#[test]
fn reset_after_rcpt() {
    let transcript = run("reset_rcpt", vec![fault("rcpt", FaultKind::ResetPeer)]);
    assert!(
        transcript
            .iter()
            .any(|l| l.ends_with("S: <connection closed>"))
    );
}

#[test]
fn drop_after_data_stores_the_message_but_never_answers() {
    let transcript = run(
        "drop_after_data",
        vec![fault("end-of-data", FaultKind::DropAfterData)],
    );
    assert!(
        transcript
            .iter()
            .any(|l| l.ends_with("S: <connection closed>"))
    );
    assert_eq!(transcript.last().unwrap(), "stored messages: 1");
}

#[test]
fn limit_data_cuts_a_reply() {
    let transcript = run(
        "limit_data_ehlo",
        vec![fault("ehlo", FaultKind::LimitData { bytes: 20 })],
    );
    assert!(
        transcript.iter().any(|l| l.ends_with("<cut>")),
        "{transcript:#?}"
    );
}

#[test]
fn bandwidth_slows_replies_on_the_virtual_clock() {
    let transcript = run(
        "bandwidth_ehlo",
        vec![fault(
            "ehlo",
            FaultKind::Bandwidth {
                bytes_per_second: 10,
            },
        )],
    );
    assert!(
        transcript
            .iter()
            .any(|l| l.contains("S: 250 SMTPUTF8") && !l.starts_with("11:00:00Z")),
        "{transcript:#?}"
    );
}

#[test]
fn faults_for_the_first_session_only() {
    replay_runtime().unwrap().block_on(async {
        let (sim, server) = setup(32);
        let mut first_only = fault("connect", respond("service_unavailable"));
        first_only.activation.first = Some(1);
        server.inject(first_only).unwrap();
        let first = session(&sim, &server).await;
        let second = session(&sim, &server).await;
        assert_eq!(first.last().unwrap(), "stored messages: 0");
        assert_eq!(second.last().unwrap(), "stored messages: 1");
    });
}

/// The transcript of one session with `faults` in force, not snapshotted.
fn transcript_with(faults: Vec<Fault>) -> Vec<String> {
    replay_runtime().unwrap().block_on(async {
        let (sim, server) = setup(37);
        for fault in faults {
            server.inject(fault).unwrap();
        }
        session(&sim, &server).await
    })
}

fn scoped(operation: &str, app: Option<&str>, mailbox: Option<&str>) -> Fault {
    Fault {
        activation: Activation {
            app: app.map(str::to_string),
            mailbox: mailbox.map(str::to_string),
            ..Activation::default()
        },
        ..fault(operation, respond("sender_thread_limit"))
    }
}

#[test]
fn a_fault_scoped_to_a_mailbox_or_an_app_hits_only_its_sessions() {
    let refused = |t: &[String]| t.iter().any(|l| l.contains("S: 432 "));
    let other = transcript_with(vec![scoped("rcpt", None, Some("sales@contoso.example"))]);
    assert!(!refused(&other), "{other:#?}");
    assert_eq!(other.last().unwrap(), "stored messages: 1");
    let upper = demo::MAILBOX.to_ascii_uppercase();
    let ours = transcript_with(vec![scoped("rcpt", None, Some(&upper))]);
    assert!(refused(&ours), "{ours:#?}");
    // At AUTH the session has not logged in yet: its XOAUTH2 line names the mailbox and the
    // token names the app.
    let at_auth = transcript_with(vec![scoped(
        "auth",
        Some(demo::APP_ID),
        Some(demo::MAILBOX),
    )]);
    assert!(
        at_auth.iter().any(|l| l.contains("AUTH XOAUTH2")) && refused(&at_auth),
        "{at_auth:#?}"
    );
    let other_app = transcript_with(vec![scoped(
        "mail",
        Some("00000000-0000-4000-8000-000000000000"),
        None,
    )]);
    assert_eq!(other_app.last().unwrap(), "stored messages: 1");
    // Before AUTH no request names a mailbox: a scoped fault at EHLO never applies.
    let ehlo = transcript_with(vec![scoped("ehlo", None, Some(demo::MAILBOX))]);
    assert!(!refused(&ehlo), "{ehlo:#?}");
}
