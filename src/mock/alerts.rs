//! The mock alert sink: PagerDuty's Events API v2 (`POST /v2/enqueue`), so the client's alerts
//! land somewhere the journal and the checks can see, and faults can take the sink down.

use bytes::Bytes;
use serde_json::{Value, json};

use super::{Ctx, HttpRequest, HttpResponse};

/// The operation name of a path, for faults and the journal.
pub fn operation(path: &str) -> &'static str {
    if path == "/v2/enqueue" {
        "enqueue"
    } else {
        "other"
    }
}

fn reply(status: u16, body: &Value) -> HttpResponse {
    http::Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Bytes::from(
            serde_json::to_vec(body).expect("JSON values serialise"),
        ))
        .expect("static response parts are valid")
}

/// PagerDuty's answer to an invalid event.
fn invalid(error: &str) -> HttpResponse {
    reply(
        400,
        &json!({"status": "invalid event", "message": "Event object is invalid", "errors": [error]}),
    )
}

pub(crate) fn handle(_ctx: &mut Ctx<'_>, request: &HttpRequest) -> HttpResponse {
    if operation(request.uri().path()) != "enqueue" {
        return reply(404, &json!({"status": "not found", "message": "Not Found"}));
    }
    if request.method() != http::Method::POST {
        return reply(
            405,
            &json!({"status": "method not allowed", "message": "Method Not Allowed"}),
        );
    }
    let Ok(event) = serde_json::from_slice::<Value>(request.body()) else {
        return invalid("Event must be a JSON object");
    };
    if event
        .get("routing_key")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return invalid("'routing_key' is missing or blank");
    }
    let action = event
        .get("event_action")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !matches!(action, "trigger" | "acknowledge" | "resolve") {
        return invalid(
            "'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')",
        );
    }
    let dedup_key = event
        .get("dedup_key")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if action == "trigger" {
        let payload = event.get("payload");
        for field in ["summary", "source", "severity"] {
            if payload
                .and_then(|p| p.get(field))
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return invalid(&format!("'payload.{field}' is missing or blank"));
            }
        }
    } else if dedup_key.is_empty() {
        return invalid("'dedup_key' is missing or blank");
    }
    reply(
        202,
        &json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
    )
}
