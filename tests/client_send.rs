//! The client's delivery attempts against the SMTP and Graph mocks, on the virtual clock.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use maildrill::client::classify::CredentialProblem;
use maildrill::client::outbox::{Message, NewMessage, Outbox};
use maildrill::client::secret::{Secret, SecretSource};
use maildrill::client::send::{Outcome, Sender, Transport};
use maildrill::client::token::{ClientAuth, TokenProvider};
use maildrill::fault::{Activation, CatalogueReply, Fault, FaultKind, Target};
use maildrill::mock::smtp::SmtpServer;
use maildrill::seed::Seed;
use maildrill::tenant::{Directory, demo};
use maildrill::time::{ClockExt as _, replay_runtime};
use maildrill::wiring::memory::MemorySmtp;

struct World {
    sim: Sim,
    smtp: SmtpServer,
    ca_pem: String,
    outbox: Outbox,
}

fn world(secret_end: &str) -> World {
    let sim = Sim::new(at("2025-02-14T11:00:00Z"), tenant(at(secret_end)), 61);
    let (smtp, ca_pem) = sim.smtp(61);
    let smtp = smtp.with_faults(sim.mocks.faults_handle());
    World {
        sim,
        smtp,
        ca_pem,
        outbox: Outbox::in_memory().unwrap(),
    }
}

impl World {
    fn tokens(&self, refresh_ahead: Duration) -> Arc<TokenProvider> {
        let secret = SecretSource::Value(Secret::new(SECRET));
        token_provider(&self.sim, secret, ClientAuth::Basic, refresh_ahead)
    }

    fn smtp_sender(&self, tokens: Arc<TokenProvider>) -> Sender {
        Sender {
            tokens,
            transport: Transport::Smtp {
                connector: Arc::new(MemorySmtp::new(self.smtp.clone())),
                tls_domain: "localhost".into(),
                ca_pem: Some(self.ca_pem.clone()),
                hello_name: "client.example".into(),
            },
            clock: self.sim.clock.clone(),
            mailbox: demo::MAILBOX.into(),
            timeout: Duration::from_secs(120),
            session: Default::default(),
        }
    }

    fn graph_sender(&self, tokens: Arc<TokenProvider>) -> Sender {
        Sender {
            tokens,
            transport: Transport::Graph {
                http: Arc::new(self.sim.net.clone()),
                graph_url: "https://graph.microsoft.com/v1.0".into(),
            },
            clock: self.sim.clock.clone(),
            mailbox: demo::MAILBOX.into(),
            timeout: Duration::from_secs(120),
            session: Default::default(),
        }
    }

    fn message(&self, subject: &str) -> Message {
        let new = NewMessage {
            from: demo::MAILBOX.into(),
            to: vec!["customer@example.com".into()],
            subject: subject.into(),
            body: "Hello.".into(),
            message_id: None,
        };
        self.outbox
            .enqueue(
                &new,
                self.sim.clock.now_utc(),
                &mut Seed(61).stream(subject),
            )
            .unwrap()
    }

    fn stored(&self) -> usize {
        Directory::lock(self.sim.mocks.directory())
            .mailbox(demo::TENANT_ID, demo::MAILBOX)
            .unwrap()
            .sent()
            .len()
    }
}

fn fault(target: Target, operation: &str, kind: FaultKind) -> Fault {
    Fault {
        target,
        operation: Some(operation.into()),
        kind,
        activation: Activation {
            first: Some(1),
            ..Activation::default()
        },
    }
}

#[test]
fn smtp_delivers_with_the_fixed_message_id() {
    replay_runtime().unwrap().block_on(async {
        let world = world("2025-03-01T00:00:00Z");
        let sender = world.smtp_sender(world.tokens(Duration::from_secs(300)));
        let message = world.message("invoice");
        assert_eq!(sender.deliver(&message).await, Outcome::Delivered);
        let received = world.smtp.received();
        assert_eq!(received[0].message_id, message.message_id);
    });
}

#[test]
fn a_token_that_expires_before_auth_is_refreshed_once_and_the_send_retried() {
    replay_runtime().unwrap().block_on(async {
        let world = world("2025-03-01T00:00:00Z");
        // No refresh ahead, and a slow greeting: the cached token expires on the way to AUTH.
        let tokens = world.tokens(Duration::ZERO);
        let sender = world.smtp_sender(tokens.clone());
        tokens
            .token("https://outlook.office365.com/.default")
            .await
            .unwrap();
        world.sim.clock.sleep(Duration::from_secs(3590)).await;
        world
            .smtp
            .inject(fault(
                Target::Smtp,
                "connect",
                FaultKind::Latency {
                    delay: Duration::from_secs(20),
                },
            ))
            .unwrap();
        assert_eq!(
            sender.deliver(&world.message("late")).await,
            Outcome::Delivered
        );
        assert_eq!(tokens.requests(), 2);
        let journal = world.smtp.journal().render();
        assert!(
            journal.contains("-> 535 5.7.3 Authentication unsuccessful"),
            "{journal}"
        );
    });
}

#[test]
fn an_expired_secret_keeps_the_message_for_later() {
    replay_runtime().unwrap().block_on(async {
        let world = world("2025-02-14T10:00:00Z");
        let sender = world.smtp_sender(world.tokens(Duration::from_secs(300)));
        assert_eq!(
            sender.deliver(&world.message("held")).await,
            Outcome::Credential(CredentialProblem::Expired)
        );
        assert_eq!(world.stored(), 0);
    });
}

#[test]
fn a_drop_after_the_final_dot_is_unknown_not_failed() {
    replay_runtime().unwrap().block_on(async {
        let world = world("2025-03-01T00:00:00Z");
        world
            .smtp
            .inject(fault(Target::Smtp, "end-of-data", FaultKind::DropAfterData))
            .unwrap();
        let sender = world.smtp_sender(world.tokens(Duration::from_secs(300)));
        assert!(matches!(
            sender.deliver(&world.message("maybe")).await,
            Outcome::Unknown(_)
        ));
        assert_eq!(world.stored(), 1, "the server has it");
    });
}

#[test]
fn graph_delivers_and_refreshes_once_after_a_401() {
    replay_runtime().unwrap().block_on(async {
        let world = world("2025-03-01T00:00:00Z");
        let tokens = world.tokens(Duration::from_secs(300));
        let sender = world.graph_sender(tokens.clone());
        assert_eq!(
            sender.deliver(&world.message("graph one")).await,
            Outcome::Delivered
        );
        let expired = CatalogueReply::parse(Target::Graph, "token_expired").unwrap();
        world
            .sim
            .mocks
            .inject(fault(
                Target::Graph,
                "send-mail",
                FaultKind::Respond {
                    reply: expired,
                    retry_after: None,
                },
            ))
            .unwrap();
        assert_eq!(
            sender.deliver(&world.message("graph two")).await,
            Outcome::Delivered
        );
        assert_eq!(tokens.requests(), 2);
        assert_eq!(world.stored(), 2);
    });
}

#[test]
fn graph_throttling_and_fail_but_deliver_are_retries() {
    replay_runtime().unwrap().block_on(async {
        let world = world("2025-03-01T00:00:00Z");
        let sender = world.graph_sender(world.tokens(Duration::from_secs(300)));
        let throttled = CatalogueReply::parse(Target::Graph, "mailbox_concurrency").unwrap();
        world
            .sim
            .mocks
            .inject(fault(
                Target::Graph,
                "send-mail",
                FaultKind::Respond {
                    reply: throttled,
                    retry_after: Some("0.249".into()),
                },
            ))
            .unwrap();
        assert_eq!(
            sender.deliver(&world.message("busy")).await,
            Outcome::Retry {
                reason: "429 ApplicationThrottled".into(),
                retry_after: Some(Duration::from_millis(249))
            }
        );
        let timeout = CatalogueReply::parse(Target::Graph, "gateway_timeout").unwrap();
        world
            .sim
            .mocks
            .inject(fault(
                Target::Graph,
                "send-mail",
                FaultKind::FailButDeliver {
                    reply: timeout,
                    retry_after: None,
                },
            ))
            .unwrap();
        assert!(matches!(
            sender.deliver(&world.message("twice")).await,
            Outcome::Retry { .. }
        ));
        assert_eq!(
            world.stored(),
            1,
            "the 504 delivered anyway: a blind retry would duplicate it"
        );
    });
}

#[test]
fn a_fifth_concurrent_graph_send_is_throttled_and_goes_through_after_retry_after() {
    replay_runtime().unwrap().block_on(async {
        let w = world("2025-03-01T00:00:00Z");
        // Each sendMail takes 2 s, so five senders started together are all in flight at once.
        let mut slow = fault(
            Target::Graph,
            "send-mail",
            FaultKind::Latency {
                delay: Duration::from_secs(2),
            },
        );
        slow.activation.first = None;
        w.sim.mocks.inject(slow).unwrap();
        let tokens = w.tokens(Duration::from_secs(300));
        let senders: Vec<Sender> = (0..5).map(|_| w.graph_sender(tokens.clone())).collect();
        let messages: Vec<Message> = (0..5).map(|i| w.message(&format!("m{i}"))).collect();
        // Each message with its own sender, all at once on the one runtime.
        let outcomes = join_all(
            senders
                .iter()
                .zip(&messages)
                .map(|(sender, message)| sender.deliver(message))
                .collect(),
        )
        .await;
        let throttled: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Retry { .. }))
            .collect();
        assert_eq!(throttled.len(), 1, "{outcomes:?}");
        assert!(
            matches!(throttled[0], Outcome::Retry { reason, retry_after: Some(after) }
                if reason == "429 ApplicationThrottled" && *after >= Duration::from_secs(1)),
            "{:?}",
            throttled[0]
        );
        assert_eq!(w.stored(), 4);
        // After its Retry-After the fifth goes through alone.
        w.sim.clock.sleep(Duration::from_secs(1)).await;
        let fifth = outcomes
            .iter()
            .position(|o| matches!(o, Outcome::Retry { .. }))
            .unwrap();
        assert_eq!(
            senders[0].deliver(&messages[fifth]).await,
            Outcome::Delivered
        );
        assert_eq!(w.stored(), 5);
    });
}

/// A minimal `join_all` over boxed futures on the current task (no extra crate needed).
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, slot) in pinned.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(output) => *slot = Some(output),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    done.into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}
