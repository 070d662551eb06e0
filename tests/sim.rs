//! The front door (`maildrill::Sim`): one builder call stands the mocks up on either wiring, a
//! fault guard clears its fault when it drops, and HTTP expectations are verified on drop.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

use maildrill::tenant::demo;
use maildrill::{
    Activation, Fault, FaultKind, HttpExpectation, RequestMatcher, Sim, SocketOptions, Target,
    Times, replay_runtime,
};

/// The token endpoint refuses every request with Entra's throttling reply.
fn throttled() -> Fault {
    Fault {
        target: Target::Entra,
        operation: Some("token".into()),
        kind: FaultKind::Respond {
            reply: maildrill::fault::CatalogueReply::EntraThrottled,
            retry_after: None,
        },
        activation: Activation::default(),
    }
}

/// A Graph token from the in-memory sim, as an `Authorization` value.
async fn bearer(sim: &Sim) -> String {
    let request = sim.credentials().token_request(&sim.endpoints().token_url);
    let response = sim.net().unwrap().send(request).await.unwrap();
    let token: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    format!("Bearer {}", token["access_token"].as_str().unwrap())
}

/// Sends one token request in memory and returns its status.
async fn token_status(sim: &Sim) -> u16 {
    let request = sim.credentials().token_request(&sim.endpoints().token_url);
    let response = sim.net().unwrap().send(request).await.unwrap();
    response.status().as_u16()
}

#[test]
fn a_fault_guard_clears_its_fault_when_it_drops() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::builder().build_in_memory().unwrap();
        assert_eq!(token_status(&sim).await, 200);
        {
            let _guard = sim.inject(throttled()).unwrap();
            assert_eq!(token_status(&sim).await, 429);
        }
        assert_eq!(token_status(&sim).await, 200);
        let statuses: Vec<Option<u16>> = sim.journal().entries().iter().map(|e| e.status).collect();
        assert_eq!(statuses, [Some(200), Some(429), Some(200)]);
    });
}

#[test]
fn a_kept_fault_stays_in_force_until_cleared_by_its_id() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::builder().build_in_memory().unwrap();
        let id = sim.inject(throttled()).unwrap().keep();
        assert_eq!(token_status(&sim).await, 429);
        assert!(sim.mocks().clear(id));
        assert_eq!(token_status(&sim).await, 200);
    });
}

#[test]
#[should_panic(
    expected = "- two sends: expected exactly 2 request(s) (graph send-mail), received 0"
)]
fn an_unmet_http_expectation_panics_when_the_sim_drops() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::builder().build_in_memory().unwrap();
        sim.expect(
            HttpExpectation::new(RequestMatcher::send_mail(), Times::exactly(2)).named("two sends"),
        );
        assert_eq!(token_status(&sim).await, 200);
    });
}

#[test]
fn the_panic_of_an_unmet_expectation_lists_every_request_seen() {
    let panic = std::panic::catch_unwind(|| {
        replay_runtime().unwrap().block_on(async {
            let sim = Sim::builder().build_in_memory().unwrap();
            let _guard = sim.expect_scoped(HttpExpectation::new(
                RequestMatcher::token().with_status(401),
                Times::at_least(1),
            ));
            assert_eq!(token_status(&sim).await, 200);
        });
    })
    .unwrap_err();
    let text = panic.downcast_ref::<String>().unwrap();
    assert!(
        text.contains(
            "- entra token, answered 401: expected at least 1 request(s) (entra token, answered 401), received 0"
        ),
        "{text}"
    );
    let line = format!(
        "1. 2025-02-14T11:00:00Z entra token POST /{}/oauth2/v2.0/token -> 200",
        demo::TENANT_ID
    );
    assert!(text.contains("Received 1 HTTP request(s):"), "{text}");
    assert!(text.contains(&line), "{text}");
}

#[test]
fn met_expectations_pass_silently_at_the_drop() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::builder().build_in_memory().unwrap();
        sim.expect(HttpExpectation::new(
            RequestMatcher::token().with_status(200),
            Times::exactly(2),
        ));
        let scoped = sim.expect_scoped(HttpExpectation::new(
            RequestMatcher::token(),
            Times::exactly(1),
        ));
        assert_eq!(token_status(&sim).await, 200);
        assert!(scoped.verify().is_ok());
        drop(scoped);
        assert_eq!(token_status(&sim).await, 200);
        assert!(sim.verify().is_ok(), "{}", sim.verify());
    });
}

#[test]
fn in_memory_the_sim_answers_a_token_request_from_one_builder_call() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::builder().build_in_memory().unwrap();
        let endpoints = sim.endpoints();
        assert_eq!(
            endpoints.authority,
            format!("https://login.microsoftonline.com/{}", demo::TENANT_ID)
        );
        assert_eq!(
            (endpoints.smtp_host.as_str(), endpoints.smtp_port),
            ("smtp.office365.com", 587)
        );
        assert!(sim.memory().is_some() && sim.http_addr().is_none());
        assert_eq!(token_status(&sim).await, 200);
    });
}

#[tokio::test]
async fn on_sockets_the_sim_answers_a_token_request_over_https_with_its_ca() {
    let sim = Sim::builder()
        .sockets(SocketOptions::default())
        .build()
        .await
        .unwrap();
    let endpoints = sim.endpoints().clone();
    let addr = sim.http_addr().unwrap();
    assert_eq!(
        endpoints.authority,
        format!("https://{addr}/{}", demo::TENANT_ID)
    );
    assert_eq!(endpoints.alerts_url, format!("https://{addr}/v2/enqueue"));
    assert_eq!(
        (endpoints.smtp_host.as_str(), endpoints.smtp_port),
        ("127.0.0.1", sim.smtp_addr().unwrap().port())
    );
    assert!(sim.memory().is_none());
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let credentials = sim.credentials();
    let response = client
        .post(&endpoints.token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", credentials.client_id.as_str()),
            ("client_secret", credentials.secret.as_str()),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    sim.expect(HttpExpectation::new(
        RequestMatcher::token(),
        Times::exactly(0),
    ));
    sim.shutdown().await;
}

#[test]
fn the_mail_a_mailbox_sent_is_queried_on_the_sim() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::builder().build_in_memory().unwrap();
        sim.expect(HttpExpectation::new(
            RequestMatcher::send_mail().with_status(202),
            Times::exactly(1),
        ));
        let net = sim.net().unwrap();
        let credentials = sim.credentials();
        let bearer = bearer(&sim).await;
        let body = r#"{"message":{"subject":"Invoice 7","toRecipients":[{"emailAddress":{"address":"a@example.com"}}]}}"#;
        let send = http::Request::post(format!(
            "{}/users/{}/sendMail",
            sim.endpoints().graph_url,
            credentials.mailbox
        ))
        .header("Authorization", bearer)
        .header("Content-Type", "application/json")
        .body(body.as_bytes().to_vec())
        .unwrap();
        assert_eq!(net.send(send).await.unwrap().status(), 202);
        let sent = sim.sent_mail();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0].subject.as_str(), sent[0].to.as_slice()),
            ("Invoice 7", ["a@example.com".to_string()].as_slice())
        );
        assert!(sim.received().is_empty(), "nothing came over SMTP");
    });
}

/// What Microsoft's Python Graph SDK (msgraph-sdk 1.65, kiota-python 1.16) sends, captured on
/// the wire in session 6: the action's parameters named `Message` and `SaveToSentItems`, the
/// UPN percent-encoded in the path, `@odata.type`, `"contentType": "text"`; and its delta call
/// as `delta()`. Graph accepts them, so the mock must.
#[test]
fn the_requests_of_microsofts_python_sdk_are_accepted() {
    replay_runtime().unwrap().block_on(async {
        let sim = Sim::builder().build_in_memory().unwrap();
        let net = sim.net().unwrap();
        let credentials = sim.credentials();
        let bearer = bearer(&sim).await;
        let upn = credentials.mailbox.replace('@', "%40");
        let body = r##"{"Message": {"@odata.type": "#microsoft.graph.message", "body": {"content": "body text", "contentType": "text"}, "subject": "hello from msgraph-sdk", "toRecipients": [{"emailAddress": {"address": "a@example.com"}}]}, "SaveToSentItems": false}"##;
        let send = http::Request::post(format!("{}/users/{upn}/sendMail", sim.endpoints().graph_url))
            .header("Authorization", &bearer)
            .header("content-type", "application/json")
            .body(body.as_bytes().to_vec())
            .unwrap();
        assert_eq!(net.send(send).await.unwrap().status(), 202);
        let sent = sim.sent_mail();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].subject, "hello from msgraph-sdk");
        let delta = http::Request::get(format!(
            "{}/users/{upn}/mailFolders/inbox/messages/delta()",
            sim.endpoints().graph_url
        ))
        .header("Authorization", &bearer)
        .body(Vec::new())
        .unwrap();
        let page = net.send(delta).await.unwrap();
        assert_eq!(page.status(), 200, "{}", String::from_utf8_lossy(page.body()));
        let page: serde_json::Value = serde_json::from_slice(page.body()).unwrap();
        assert!(page["@odata.deltaLink"].as_str().is_some(), "{page}");
    });
}
