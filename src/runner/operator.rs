//! The operator's rotation script a `rotate-secret-via-graph` step runs: `addPassword` through
//! the Graph mock with the app's own token, the new secret into the client's secret file, a
//! throttled call retried after its `Retry-After`. It plays the harness's part, not the
//! subject's: its requests go through the mocks' faults and journal like any other, and it
//! never touches the subject.
//!
//! The token comes straight from the directory (an operator's script has its own credential),
//! so the token endpoint's journal holds only the subject's requests.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::mock::{Action, HttpMocks};
use crate::subject::SecretHandle;
use crate::tenant::{Directory, Resource};
use crate::time::{ClockExt as _, SharedClock, to_chrono};

/// How long to wait after a throttled or broken call that names no `Retry-After`.
const RETRY_WITHOUT_HINT: Duration = Duration::from_secs(60);

/// How long the script waits for an answer before it gives the call up (a hang).
const CALL_TIMEOUT: Duration = Duration::from_secs(100);

/// Where the script rotates: the mocks, the app, the client's secret file, the clock.
#[derive(Debug, Clone)]
pub(super) struct Operator {
    pub mocks: HttpMocks,
    pub clock: SharedClock,
    pub tenant: String,
    pub app: String,
    pub secret: SecretHandle,
}

/// How one call of the script ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// 200: the new secret's text.
    Added(String),
    /// Throttled or unavailable (429, 5xx, a reset or a hang): try again after this long.
    Retry(Duration),
    /// Refused for good (a policy, a permission, a bad request): the status.
    Refused(u16),
}

impl Operator {
    /// Rotates: calls `addPassword` until it succeeds, is refused, or `until` comes; on
    /// success the new secret goes into the client's secret file. Returns the last outcome.
    pub async fn rotate(&self, lifetime: Option<Duration>, until: DateTime<Utc>) -> Outcome {
        loop {
            let outcome = self.add_password(lifetime).await;
            match &outcome {
                Outcome::Added(secret) => {
                    // A failed write leaves the subject on its old secret, as a failed vault
                    // write would: the journal still shows the rotation.
                    let _ = self.secret.set(secret);
                    return outcome;
                }
                Outcome::Refused(_) => return outcome,
                Outcome::Retry(wait) => {
                    let next = self.clock.now_utc() + to_chrono(*wait);
                    if next >= until {
                        return outcome;
                    }
                    self.clock.sleep_until(self.clock.instant_at(next)).await;
                }
            }
        }
    }

    /// One `addPassword` call, its reply carried out on the clock as a wiring would.
    async fn add_password(&self, lifetime: Option<Duration>) -> Outcome {
        let now = self.clock.now_utc();
        let token = {
            let mut directory = Directory::lock(self.mocks.directory());
            directory.issue_token(&self.tenant, &self.app, Resource::Graph, now)
        };
        let Some(token) = token else {
            // The app is gone: nothing to rotate.
            return Outcome::Refused(404);
        };
        let mut credential = json!({"displayName": "rotated by operator"});
        if let Some(lifetime) = lifetime {
            credential["endDateTime"] = json!(crate::time::rfc3339(now + to_chrono(lifetime)));
        }
        let body = json!({ "passwordCredential": credential }).to_string();
        let request = http::Request::post(format!(
            "/v1.0/applications(appId='{}')/addPassword",
            self.app
        ))
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", token.value),
        )
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(bytes::Bytes::from(body))
        .expect("a request from valid parts");
        let reply = self.mocks.handle(request);
        let response = match reply.action {
            Action::Respond(response) => response,
            Action::Hang => {
                self.clock.sleep(CALL_TIMEOUT).await;
                return Outcome::Retry(RETRY_WITHOUT_HINT);
            }
            Action::Truncate(..) | Action::Reset => {
                self.clock.sleep(reply.delay).await;
                return Outcome::Retry(RETRY_WITHOUT_HINT);
            }
        };
        self.clock.sleep(reply.delay).await;
        outcome(&response)
    }
}

/// What a reply to `addPassword` tells the script.
fn outcome(response: &crate::mock::HttpResponse) -> Outcome {
    let status = response.status().as_u16();
    if status == 200 {
        let secret = serde_json::from_slice::<Value>(response.body())
            .ok()
            .and_then(|v| v.get("secretText")?.as_str().map(str::to_string));
        return match secret {
            Some(secret) => Outcome::Added(secret),
            None => Outcome::Retry(RETRY_WITHOUT_HINT),
        };
    }
    if status == 429 || status >= 500 {
        let hint = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            // A year at most: a hint past the end of any replay is as good as none.
            .filter(|s| s.is_finite() && (0.0..=31_536_000.0).contains(s))
            .map(Duration::from_secs_f64);
        return Outcome::Retry(hint.unwrap_or(RETRY_WITHOUT_HINT));
    }
    Outcome::Refused(status)
}
