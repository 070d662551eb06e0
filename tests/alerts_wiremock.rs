//! The client's alerts against a wiremock alert sink over real HTTP: PagerDuty Events API v2
//! bodies, verified by wiremock's expectations on drop.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

use std::sync::Arc;

use maildrill::client::alert::{AlertEvent, Alerter, Severity};
use maildrill::client::transport::ReqwestTransport;
use maildrill::time::VirtualClock;
use serde_json::json;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn trigger_and_resolve_reach_a_pagerduty_compatible_sink() {
    let sink = MockServer::builder().start().await;
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .and(body_partial_json(json!({
            "routing_key": "R0UTINGKEY",
            "event_action": "trigger",
            "dedup_key": "delivery-latency/mail-sendout",
            "payload": {"severity": "critical", "source": "maildrill-client", "timestamp": "2025-02-14T11:35:00Z"},
        })))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({"status": "success", "message": "Event processed"})))
        .expect(1)
        .named("trigger")
        .mount(&sink)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .and(body_partial_json(
            json!({"event_action": "resolve", "dedup_key": "delivery-latency/mail-sendout"}),
        ))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .named("resolve")
        .mount(&sink)
        .await;
    let clock = VirtualClock::starting_at("2025-02-14T11:35:00Z".parse().unwrap()).shared();
    let http = Arc::new(ReqwestTransport::new(reqwest::Client::new()));
    let alerter = Alerter::new(
        http,
        format!("{}/v2/enqueue", sink.uri()),
        "R0UTINGKEY".into(),
        clock,
    );
    let event = |action| AlertEvent {
        action,
        kind: "delivery-latency",
        dedup_key: "delivery-latency/mail-sendout".into(),
        summary: "Mail delivery is stalled".into(),
        severity: Severity::Critical,
        at: "2025-02-14T11:35:00Z".parse().unwrap(),
        details: json!({"oldest_age_s": 301}),
    };
    alerter.raise(event("trigger")).await;
    alerter.raise(event("resolve")).await;
    assert_eq!(alerter.pending(), 0);
    // wiremock verifies both expectations when `sink` drops.
}
