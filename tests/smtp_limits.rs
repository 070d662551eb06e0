//! The SMTP mock's Exchange Online limits, its wiremock-style expectations, and arbitrary bytes
//! through the real server loop (the stand-in for a coverage fuzzer, which needs nightly).
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::smtp::Client;
use common::*;
use maildrill::journal::Journal;
use maildrill::mock::smtp::{Expectation, MessageMatcher, SmtpConfig, SmtpServer, Times};
use maildrill::tenant::{Directory, Resource, demo};
use maildrill::time::{ClockExt as _, replay_runtime};
use maildrill::wiring::memory::MemorySmtp;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn setup(config: SmtpConfig) -> (Sim, SmtpServer) {
    let sim = Sim::new(
        at("2025-02-14T11:00:00Z"),
        tenant(at("2025-03-01T00:00:00Z")),
        41,
    );
    let server = SmtpServer::new(
        sim.mocks.directory().clone(),
        sim.clock.clone(),
        Journal::new(),
        config,
    );
    (sim, server)
}

fn auth_line(sim: &Sim) -> String {
    let now = sim.clock.now_utc();
    let token = Directory::lock(sim.mocks.directory())
        .issue_token(demo::TENANT_ID, demo::APP_ID, Resource::Exchange, now)
        .unwrap();
    let payload = format!(
        "user={}\x01auth=Bearer {}\x01\x01",
        demo::MAILBOX,
        token.value
    );
    format!(
        "AUTH XOAUTH2 {}",
        base64::engine::general_purpose::STANDARD.encode(payload)
    )
}

async fn logged_in<'a>(sim: &'a Sim, smtp: &MemorySmtp) -> Client<'a> {
    let mut client = Client::new(sim, smtp.connect());
    client.reply().await;
    client.command("EHLO client.example").await;
    client.command(&auth_line(sim)).await;
    client
}

async fn send(client: &mut Client<'_>, to: &[&str], subject: &str) {
    client
        .command(&format!("MAIL FROM:<{}>", demo::MAILBOX))
        .await;
    for rcpt in to {
        client.command(&format!("RCPT TO:<{rcpt}>")).await;
    }
    client.command("DATA").await;
    client.send(&format!("Subject: {subject}")).await;
    client.send("").await;
    client.command(".").await;
}

#[test]
fn a_mailbox_fourth_concurrent_connection_gets_432_at_mail_from() {
    replay_runtime().unwrap().block_on(async {
        let (sim, server) = setup(SmtpConfig::default());
        let smtp = MemorySmtp::new(server.clone());
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(logged_in(&sim, &smtp).await);
        }
        let mut fourth = logged_in(&sim, &smtp).await;
        fourth
            .command(&format!("MAIL FROM:<{}>", demo::MAILBOX))
            .await;
        assert!(
            fourth
                .last()
                .contains("S: 432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"),
            "{}",
            fourth.last()
        );
        // When one of the three leaves, a new session may send.
        let mut first = held.remove(0);
        first.command("QUIT").await;
        drop(first);
        tokio::task::yield_now().await;
        let mut fifth = logged_in(&sim, &smtp).await;
        fifth
            .command(&format!("MAIL FROM:<{}>", demo::MAILBOX))
            .await;
        assert!(
            fifth.last().contains("S: 250 2.1.0 Sender OK"),
            "{}",
            fifth.last()
        );
    });
}

#[test]
fn the_daily_recipient_cap_is_554_5_2_0() {
    replay_runtime().unwrap().block_on(async {
        let (sim, server) = setup(SmtpConfig {
            recipients_per_day: 3,
            ..SmtpConfig::default()
        });
        let smtp = MemorySmtp::new(server.clone());
        let mut client = logged_in(&sim, &smtp).await;
        send(&mut client, &["a@example.com", "b@example.com"], "one").await;
        assert!(
            client.last().contains("S: 250 2.0.0 OK"),
            "{}",
            client.last()
        );
        send(&mut client, &["c@example.com", "d@example.com"], "two").await;
        assert!(
            client.last().contains(
                "S: 554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException"
            ),
            "{}",
            client.last()
        );
        // The window rolls after 24 hours.
        sim.clock.sleep(Duration::from_secs(86_400)).await;
        let mut later = logged_in(&sim, &smtp).await;
        send(&mut later, &["c@example.com", "d@example.com"], "three").await;
        assert!(later.last().contains("S: 250 2.0.0 OK"), "{}", later.last());
    });
}

#[test]
fn over_thirty_a_minute_delivery_is_delayed_not_refused() {
    replay_runtime().unwrap().block_on(async {
        let (sim, server) = setup(SmtpConfig::default());
        let smtp = MemorySmtp::new(server.clone());
        let mut client = logged_in(&sim, &smtp).await;
        for i in 0..31 {
            send(&mut client, &["a@example.com"], &format!("m{i}")).await;
            assert!(
                client.last().contains("S: 250 2.0.0 OK"),
                "{}",
                client.last()
            );
        }
        let directory = Directory::lock(sim.mocks.directory());
        let sent: Vec<_> = directory
            .mailbox(demo::TENANT_ID, demo::MAILBOX)
            .unwrap()
            .sent()
            .map(|m| m.at)
            .collect();
        assert_eq!(sent[29], at("2025-02-14T11:00:00Z"));
        assert_eq!(sent[30], at("2025-02-14T11:01:00Z"));
    });
}

#[test]
fn expectations_pass_when_met_and_panic_with_a_report_when_not() {
    replay_runtime().unwrap().block_on(async {
        let (sim, server) = setup(SmtpConfig::default());
        let smtp = MemorySmtp::new(server.clone());
        let met = server.expect(Expectation {
            name: "invoice to the customer".into(),
            matcher: MessageMatcher { to: Some("customer@example.com".into()), ..MessageMatcher::default() },
            times: Times::exactly(1),
        });
        let unmet = server.expect(Expectation {
            name: "receipt".into(),
            matcher: MessageMatcher { subject_contains: Some("receipt".into()), ..MessageMatcher::default() },
            times: Times::at_least(1),
        });
        let mut client = logged_in(&sim, &smtp).await;
        send(&mut client, &["customer@example.com"], "invoice 7").await;
        assert_eq!(server.received().len(), 1);
        assert!(met.verify().is_ok());
        drop(met);
        let report = unmet.verify();
        assert!(!report.is_ok());
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(unmet))).unwrap_err();
        let text = panic.downcast_ref::<String>().unwrap();
        assert!(text.contains("- receipt: expected at least 1 message(s) (subject containing \"receipt\"), received 0"), "{text}");
        assert!(text.contains("1. 2025-02-14T11:00:00Z from mailman@contoso.onmicrosoft.com to customer@example.com subject \"invoice 7\""), "{text}");
    });
}

/// A reply line is `NNN SP text` or `NNN-text`, with a 2xx to 5xx code.
fn well_formed(line: &str) -> bool {
    let bytes = line.as_bytes();
    bytes.len() >= 4
        && bytes[..3].iter().all(u8::is_ascii_digit)
        && matches!(bytes[0], b'2'..=b'5')
        && matches!(bytes[3], b' ' | b'-')
}

fn chunks() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let command = prop_oneof![
        Just(b"EHLO x\r\n".to_vec()),
        Just(b"MAIL FROM:<a@b>\r\n".to_vec()),
        Just(b"RCPT TO:<c@d>\r\n".to_vec()),
        Just(b"DATA\r\n".to_vec()),
        Just(b".\r\n".to_vec()),
        Just(b"BDAT 5 LAST\r\n".to_vec()),
        Just(b"AUTH XOAUTH2\r\n".to_vec()),
        Just(b"STARTTLS\r\n".to_vec()),
        Just(vec![b'A'; 13_000]),
    ];
    let bytes = proptest::collection::vec(any::<u8>(), 0..300);
    proptest::collection::vec(prop_oneof![2 => command, 1 => bytes], 0..12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_through_the_server_never_panic_hang_or_garble(input in chunks()) {
        let replies = replay_runtime().unwrap().block_on(async {
            let (sim, server) = setup(SmtpConfig::default());
            let (mut client, server_side) = tokio::io::duplex(1 << 16);
            let serving = server.serve(server_side, "127.0.0.1");
            let talking = async {
                for chunk in &input {
                    if client.write_all(chunk).await.is_err() {
                        break;
                    }
                }
                let _ = client.shutdown().await;
                let mut out = Vec::new();
                // Everything must be answered (or the session closed) within a virtual minute.
                let read = sim.clock.timeout(Duration::from_secs(60), client.read_to_end(&mut out)).await;
                (read.is_ok(), out)
            };
            let ((finished, out), ()) = tokio::join!(talking, serving);
            (finished, String::from_utf8_lossy(&out).into_owned())
        });
        let (finished, text) = replies;
        prop_assert!(finished, "the server hung");
        for line in text.split_terminator("\r\n") {
            prop_assert!(well_formed(line), "{:?}", line);
        }
    }
}
