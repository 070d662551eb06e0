//! What the two HTTP targets share: requests as plain data, the sim they hit (rebuilt now and
//! then so state stays small), and the checks of Entra's and Graph's reply envelopes.

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use maildrill::journal::MockName;
use maildrill::mock::{Action, HttpRequest, HttpResponse, route};
use maildrill::tenant::{TenantSpec, demo};
use maildrill::{Journal, Seed, Sim};
use serde_json::Value;

use super::mutate;

/// The demo app's secret.
pub const SECRET: &str = "Mlm8Q~fuzz-secret-value-0000000000000000";
/// Graph's scope.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// Exchange Online's scope.
pub const EXCHANGE_SCOPE: &str = "https://outlook.office365.com/.default";
/// Stands for the current Graph token in generated headers (sims are rebuilt; tokens change).
pub const GRAPH_TOKEN: &str = "{GRAPH_TOKEN}";
/// Stands for a current Exchange token (the wrong audience for Graph).
pub const EXCHANGE_TOKEN: &str = "{EXCHANGE_TOKEN}";

/// The sim's clock start.
pub fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-02-14T11:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// The demo tenant, its secret good for a year.
pub fn tenant() -> TenantSpec {
    demo::tenant(start() - TimeDelta::days(30), SECRET, TimeDelta::days(365))
}

/// A request as plain data.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method.
    pub method: &'static str,
    /// Path and query.
    pub uri: String,
    /// Header names and raw values.
    pub headers: Vec<(&'static str, Vec<u8>)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Request {
    /// A request with no headers.
    pub fn new(method: &'static str, uri: String, body: Vec<u8>) -> Request {
        Request {
            method,
            uri,
            headers: Vec::new(),
            body,
        }
    }

    /// The request as text.
    pub fn show(&self) -> String {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", mutate::escape(v)))
            .collect();
        format!(
            "{} {}\n{}\n\nbody=\"{}\"",
            self.method,
            mutate::escape(self.uri.as_bytes()),
            headers.join("\n"),
            mutate::escape(&self.body)
        )
    }

    /// The `http` request, the token placeholders filled; `None` when hyper would refuse the
    /// request line (the mocks never see it). Header values hyper refuses are left out.
    pub fn build(&self, tokens: &Tokens) -> Option<HttpRequest> {
        let uri = if self.uri.contains('{') {
            tokens.fill(&self.uri)
        } else {
            self.uri.clone()
        };
        let mut builder = http::Request::builder()
            .method(self.method)
            .uri(http::Uri::try_from(uri).ok()?);
        for (name, value) in &self.headers {
            let value = if value.contains(&b'{') {
                tokens.fill(&String::from_utf8_lossy(value)).into_bytes()
            } else {
                value.clone()
            };
            if let Ok(value) = http::HeaderValue::from_bytes(&value) {
                builder = builder.header(*name, value);
            }
        }
        builder.body(Bytes::from(self.body.clone())).ok()
    }
}

/// The tokens of the current sim.
#[derive(Debug, Default, Clone)]
pub struct Tokens {
    /// A Graph token.
    pub graph: String,
    /// An Exchange token.
    pub exchange: String,
    /// The first delta round's `$deltatoken`.
    pub delta: String,
}

impl Tokens {
    fn fill(&self, text: &str) -> String {
        text.replace(GRAPH_TOKEN, &self.graph)
            .replace(EXCHANGE_TOKEN, &self.exchange)
            .replace("{DELTA_TOKEN}", &self.delta)
    }
}

/// A sim in memory on its own replay runtime, rebuilt every `every` requests.
pub struct Target {
    runtime: tokio::runtime::Runtime,
    tenant: TenantSpec,
    sim: Option<Sim>,
    /// The tokens of the current sim.
    pub tokens: Tokens,
    served: u64,
    every: u64,
}

impl Target {
    /// A target over `tenant`.
    pub fn new(tenant: TenantSpec, every: u64) -> Target {
        Target {
            runtime: maildrill::time::replay_runtime().expect("a replay runtime"),
            tenant,
            sim: None,
            tokens: Tokens::default(),
            served: 0,
            every,
        }
    }

    /// Answers one request (no faults: the answer must be a response).
    pub fn handle(&mut self, request: &Request) -> Result<Option<(String, HttpResponse)>, String> {
        let _enter = self.runtime.enter();
        if self.sim.is_none() || self.served.is_multiple_of(self.every) {
            self.rebuild();
        }
        self.served += 1;
        let Some(sim) = &self.sim else {
            return Err("no sim".into());
        };
        let Some(built) = request.build(&self.tokens) else {
            return Ok(None);
        };
        let path = built.uri().path().to_string();
        match sim.mocks().handle(built).action {
            Action::Respond(response) => Ok(Some((path, response))),
            other => Err(format!("no fault, yet the mock answered {other:?}")),
        }
    }

    fn rebuild(&mut self) {
        let sim = Sim::builder()
            .start(start())
            .seed(Seed(16))
            .tenant(self.tenant.clone())
            .journal(Journal::bounded(64))
            .build_in_memory()
            .expect("an in-memory sim");
        let token = |scope: &str| {
            let form = format!(
                "grant_type=client_credentials&client_id={}&client_secret={}&scope={scope}",
                demo::APP_ID,
                SECRET
            );
            let request = http::Request::post(format!("/{}/oauth2/v2.0/token", demo::TENANT_ID))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(Bytes::from(form))
                .expect("a token request");
            match sim.mocks().handle(request).action {
                Action::Respond(r) => json_field(r.body(), "access_token"),
                _ => String::new(),
            }
        };
        self.tokens.graph = token(GRAPH_SCOPE);
        self.tokens.exchange = token(EXCHANGE_SCOPE);
        let delta = http::Request::get(format!(
            "/v1.0/users/{}/mailFolders/inbox/messages/delta",
            demo::MAILBOX
        ))
        .header("Authorization", format!("Bearer {}", self.tokens.graph))
        .body(Bytes::new())
        .expect("a delta request");
        if let Action::Respond(r) = sim.mocks().handle(delta).action {
            let link = json_field(r.body(), "@odata.deltaLink");
            self.tokens.delta = link
                .split_once("$deltatoken=")
                .map(|(_, t)| t.to_string())
                .unwrap_or_default();
        }
        self.sim = Some(sim);
    }
}

fn json_field(body: &[u8], name: &str) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get(name)?.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Checks one answer: a 2xx or 4xx; Entra's token endpoint answers JSON (its 429 is plain
/// text) with its error envelope on 4xx; Graph answers its error envelope on 4xx and JSON or
/// nothing on 2xx. The status is the outcome class.
pub fn check_reply(path: &str, response: &HttpResponse) -> Result<u16, String> {
    let status = response.status().as_u16();
    if !(200..300).contains(&status) && !(400..500).contains(&status) {
        return Err(format!("status {status} for {path}"));
    }
    let body = response.body();
    let (mock, operation) = route(path);
    let verdict = match mock {
        MockName::Graph => graph_envelope(status, body),
        _ if operation == "token" || operation == "discovery" => entra_envelope(status, body),
        MockName::Entra if status == 404 => Ok(()),
        _ => Err(format!("status {status} from {mock:?} {operation}")),
    };
    verdict.map(|()| status).map_err(|why| {
        format!(
            "{why}; status {status}; body \"{}\"",
            mutate::escape(&body[..body.len().min(600)])
        )
    })
}

fn graph_envelope(status: u16, body: &[u8]) -> Result<(), String> {
    if status < 300 {
        if body.is_empty() || serde_json::from_slice::<Value>(body).is_ok() {
            return Ok(());
        }
        return Err("2xx body is not JSON".into());
    }
    let json: Value =
        serde_json::from_slice(body).map_err(|e| format!("4xx body is not JSON: {e}"))?;
    let error = json.get("error").ok_or("no `error` object")?;
    for field in ["code", "message"] {
        if !error.get(field).is_some_and(Value::is_string) {
            return Err(format!("error.{field} is not a string"));
        }
    }
    Ok(())
}

fn entra_envelope(status: u16, body: &[u8]) -> Result<(), String> {
    let json: Value = match serde_json::from_slice(body) {
        Ok(json) => json,
        // The documented plain-text throttling page.
        Err(_) if status == 429 => return Ok(()),
        Err(e) => return Err(format!("body is not JSON: {e}")),
    };
    if status < 300 {
        return if json.is_object() {
            Ok(())
        } else {
            Err("2xx body is not an object".into())
        };
    }
    if !json.get("error").is_some_and(Value::is_string) {
        return Err("no `error` string".into());
    }
    let description = json
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !description.starts_with("AADSTS") || !description.contains(" Trace ID: ") {
        return Err("error_description is not AADSTS... Trace ID ...".into());
    }
    if !json.get("error_codes").is_some_and(Value::is_array) {
        return Err("no `error_codes` array".into());
    }
    for field in ["timestamp", "trace_id", "correlation_id"] {
        if !json.get(field).is_some_and(Value::is_string) {
            return Err(format!("no `{field}` string"));
        }
    }
    Ok(())
}

/// Percent-encodes every byte outside RFC 3986's unreserved set.
pub fn pct(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, percent_encoding::NON_ALPHANUMERIC).to_string()
}
