//! Graph behaviour that needs virtual time: the per-mailbox concurrency limit and the
//! "fail but deliver" trap, over the in-memory wiring on the replay runtime.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use std::time::Duration;

use common::*;
use maildrill::fault::{Activation, CatalogueReply, Fault, FaultKind, Target};
use maildrill::mock::HttpMocksConfig;
use maildrill::seed::Seed;
use maildrill::tenant::{Directory, demo};
use maildrill::time::replay_runtime;

fn sim_with_latency(latency: Duration) -> Sim {
    let config = HttpMocksConfig {
        seed: Seed(5),
        send_mail_latency: latency,
        ..HttpMocksConfig::default()
    };
    Sim::with_config(
        at("2025-02-14T11:00:00Z"),
        tenant(at("2025-03-01T00:00:00Z")),
        config,
    )
}

fn send_mail(token: &str, subject: &str) -> http::Request<Vec<u8>> {
    let body = format!(
        r#"{{"message":{{"subject":"{subject}","toRecipients":[{{"emailAddress":{{"address":"a@example.com"}}}}]}}}}"#
    );
    http::Request::post(format!(
        "https://graph.microsoft.com/v1.0/users/{}/sendMail",
        demo::MAILBOX
    ))
    .header("Authorization", format!("Bearer {token}"))
    .header("Content-Type", "application/json")
    .body(body.into_bytes())
    .unwrap()
}

fn sent_count(sim: &Sim) -> usize {
    Directory::lock(sim.mocks.directory())
        .mailbox(demo::TENANT_ID, demo::MAILBOX)
        .unwrap()
        .sent()
        .len()
}

#[test]
fn a_fifth_concurrent_send_mail_is_429_application_throttled() {
    replay_runtime().unwrap().block_on(async {
        let sim = sim_with_latency(Duration::from_millis(800));
        let token = sim.graph_token();
        let sends = (0..5).map(|i| sim.net.send(send_mail(&token, &format!("m{i}"))));
        let responses = futures_join_all(sends).await;
        let statuses: Vec<u16> = responses.iter().map(|r| r.as_ref().unwrap().status().as_u16()).collect();
        assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 4, "{statuses:?}");
        let throttled = responses.iter().map(|r| r.as_ref().unwrap()).find(|r| r.status() == 429).unwrap();
        assert_eq!(throttled.headers()["retry-after"], "1");
        assert_eq!(
            String::from_utf8_lossy(throttled.body()),
            r#"{"error":{"code":"ApplicationThrottled","message":"Application is over its MailboxConcurrency limit."}}"#
        );
        assert_eq!(sent_count(&sim), 4);
        // Once the four complete, the slots are free again.
        let again = sim.net.send(send_mail(&token, "later")).await.unwrap();
        assert_eq!(again.status(), 202);
    });
}

#[test]
fn fail_but_deliver_stores_the_message_and_answers_504() {
    replay_runtime().unwrap().block_on(async {
        let sim = sim_with_latency(Duration::ZERO);
        sim.mocks
            .inject(Fault {
                target: Target::Graph,
                operation: Some("send-mail".into()),
                kind: FaultKind::FailButDeliver {
                    reply: CatalogueReply::parse(Target::Graph, "gateway_timeout").unwrap(),
                    retry_after: None,
                },
                activation: Activation {
                    first: Some(1),
                    ..Activation::default()
                },
            })
            .unwrap();
        let token = sim.graph_token();
        let first = sim.net.send(send_mail(&token, "invoice")).await.unwrap();
        assert_eq!(first.status(), 504);
        assert_eq!(
            sent_count(&sim),
            1,
            "the message went out although the client saw 504"
        );
        let retry = sim.net.send(send_mail(&token, "invoice")).await.unwrap();
        assert_eq!(retry.status(), 202);
        assert_eq!(sent_count(&sim), 2, "a blind retry duplicates the mail");
        let journal = sim.mocks.journal().render();
        assert!(
            journal.contains("-> 504 (fault fail_but_deliver gateway_timeout)"),
            "{journal}"
        );
    });
}

#[test]
fn latency_faults_delay_the_reply_on_the_virtual_clock() {
    replay_runtime().unwrap().block_on(async {
        let sim = sim_with_latency(Duration::ZERO);
        sim.mocks
            .inject(Fault {
                target: Target::Graph,
                operation: None,
                kind: FaultKind::Latency {
                    delay: Duration::from_secs(45),
                },
                activation: Activation::default(),
            })
            .unwrap();
        let token = sim.graph_token();
        let response = sim.net.send(send_mail(&token, "slow")).await.unwrap();
        assert_eq!(response.status(), 202);
        assert_eq!(
            maildrill::time::rfc3339(sim.clock.now_utc()),
            "2025-02-14T11:00:45Z"
        );
    });
}

/// Joins futures on the current task, in order (no extra dependency for one helper).
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futures.map(|f| Box::pin(f)).collect();
    let mut outputs = Vec::new();
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(output) => {
                        *result = Some(output);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.extend(
        results
            .into_iter()
            .map(|r| r.expect("every future completed")),
    );
    outputs
}
