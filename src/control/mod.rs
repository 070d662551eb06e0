//! The control API of `maildrill serve` (CONTRACTS section 9): REST and JSON under
//! `/_maildrill/` on the mocks' HTTPS listener, to read and move the clock, manage secrets,
//! inject and clear faults, read the evidence (journal, mail, alerts) and reset, while a
//! client runs against the mocks.
//!
//! Every call needs the bearer token `serve` generates and writes to the environment file
//! (`MAILDRILL_CONTROL_TOKEN`); calls from other hosts are refused unless remote control was
//! asked for. A refused call is an RFC 9457 problem and changes nothing: each handler checks
//! everything before it touches the state. Control calls are not journaled: the journal is
//! what the client did.

mod apps;
mod events;
mod evidence;
mod faults;
mod openapi;
mod problem;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use rand::TryRngCore as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};

pub use problem::Problem;
pub use routes::{Op, ROUTES, Route};

use crate::journal::Journal;
use crate::mock::smtp::SmtpServer;
use crate::mock::{HttpMocks, HttpRequest, HttpResponse};
use crate::tenant::{DirectoryConfig, SharedDirectory};
use crate::time::CalendarClock;
use crate::wiring::http::Front;

/// The path every control resource lives under.
pub const BASE: &str = "/_maildrill/";

/// How the control API is set up.
#[derive(Clone)]
pub struct ControlOptions {
    /// The bearer token every call must carry.
    pub token: String,
    /// Answer clients on other hosts too (with the token): `serve --bind` to an address other
    /// than loopback.
    pub allow_remote: bool,
    /// The clock the mocks read, which `clock/advance` moves.
    pub clock: CalendarClock,
}

impl std::fmt::Debug for ControlOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlOptions")
            .field("token", &"[redacted]")
            .field("allow_remote", &self.allow_remote)
            .field("clock", &self.clock)
            .finish()
    }
}

impl ControlOptions {
    /// Loopback only, with a fresh token from the operating system's random source.
    pub fn new(clock: CalendarClock) -> std::io::Result<ControlOptions> {
        Ok(ControlOptions {
            token: generate_token()?,
            allow_remote: false,
            clock,
        })
    }
}

/// 32 random bytes from the operating system, URL-safe base64: a token nobody guesses (the
/// seed, which makes everything else repeatable, would make it guessable).
pub fn generate_token() -> std::io::Result<String> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(std::io::Error::other)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What the control API works on: the sim's state, and how to rebuild it on a reset.
#[derive(Debug, Clone)]
pub(crate) struct ControlParts {
    pub directory: SharedDirectory,
    pub initial: DirectoryConfig,
    pub mocks: HttpMocks,
    pub smtp: SmtpServer,
    pub journal: Journal,
}

/// The control API, as a [`Front`] before the mocks on the HTTP listener.
#[derive(Debug, Clone)]
pub struct Control(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    token_sha256: [u8; 32],
    allow_remote: bool,
    clock: CalendarClock,
    parts: ControlParts,
}

/// A handler's outcome: a response, or the problem that refused the call.
type Answer = Result<HttpResponse, Problem>;

impl Control {
    pub(crate) fn new(options: &ControlOptions, parts: ControlParts) -> Control {
        Control(Arc::new(Inner {
            token_sha256: Sha256::digest(options.token.as_bytes()).into(),
            allow_remote: options.allow_remote,
            clock: options.clock.clone(),
            parts,
        }))
    }

    fn authorized(&self, request: &HttpRequest) -> bool {
        let Some(token) = crate::mock::header(request, "authorization")
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
        else {
            return false;
        };
        // Hashes compare in time independent of where the tokens differ.
        <[u8; 32]>::from(Sha256::digest(token.as_bytes())) == self.0.token_sha256
    }

    fn dispatch(&self, request: &HttpRequest) -> Answer {
        let path = request.uri().path();
        let under = path.strip_prefix(BASE).unwrap_or("");
        let (route, params) = routes::find(request.method(), under).map_err(|miss| match miss {
            routes::Miss::NotFound => {
                Problem::not_found(None, format!("no control resource at {path}"))
            }
            routes::Miss::Method(allowed) => Problem::method(&allowed),
        })?;
        let inner = &*self.0;
        match route.op {
            Op::OpenApi => Ok(json(200, &openapi::document())),
            Op::Clock => Ok(json(200, &apps::clock(&inner.clock))),
            Op::AdvanceClock => apps::advance(&inner.clock, body(request)?),
            Op::Apps => Ok(json(200, &apps::list(inner))),
            Op::AddSecret => apps::add(inner, &params[0], body(request)?),
            Op::ExpireSecret => apps::expire(inner, &params[0], &params[1]),
            Op::RemoveSecret => apps::remove(inner, &params[0], &params[1]),
            Op::Faults => Ok(json(200, &faults::list(&inner.parts.mocks))),
            Op::InjectFault => faults::inject(inner, body(request)?),
            Op::ClearFaults => {
                inner.parts.mocks.clear_all();
                Ok(no_content())
            }
            Op::ClearFault => faults::clear(&inner.parts.mocks, &params[0]),
            Op::Journal => evidence::journal(&inner.parts.journal, request.uri().query()),
            Op::Messages => evidence::messages(&inner.parts.directory, &params[0]),
            Op::Alerts => Ok(json(200, &evidence::alerts(&inner.parts.journal))),
            Op::UserEvent => events::user_event(inner, &params[0], body(request)?),
            Op::TenantEvent => events::tenant_event(inner, &params[0], body(request)?),
            Op::Reset => {
                self.reset();
                Ok(no_content())
            }
        }
    }

    /// The initial state again: tenant (secrets, tokens, mailboxes), faults, evidence, and the
    /// calendar at its start.
    fn reset(&self) {
        let parts = &self.0.parts;
        parts.mocks.clear_all();
        *crate::tenant::Directory::lock(&parts.directory) =
            crate::tenant::Directory::new(&parts.initial);
        parts.journal.clear();
        parts.smtp.clear_received();
        self.0.clock.reset();
    }
}

impl Front for Control {
    fn claims(&self, path: &str) -> bool {
        path.starts_with(BASE) || path == BASE.trim_end_matches('/')
    }

    fn answer(&self, peer: SocketAddr, request: HttpRequest) -> HttpResponse {
        let answer = if !self.0.allow_remote && !peer.ip().is_loopback() {
            Err(Problem::remote())
        } else if !self.authorized(&request) {
            Err(Problem::unauthorized())
        } else {
            self.dispatch(&request)
        };
        answer.unwrap_or_else(|problem| problem.response())
    }
}

/// A JSON response.
fn json(status: u16, value: &impl Serialize) -> HttpResponse {
    let body = serde_json::to_vec(value).expect("control responses serialise");
    http::Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(body.into())
        .expect("static response parts are valid")
}

fn no_content() -> HttpResponse {
    http::Response::builder()
        .status(204)
        .body(bytes::Bytes::new())
        .expect("static response parts are valid")
}

/// The request's JSON body as `T` (an empty body reads as `{}`), or a problem naming the field.
fn body<T: DeserializeOwned>(request: &HttpRequest) -> Result<T, Problem> {
    let bytes: &[u8] = if request.body().iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        request.body()
    };
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let value =
        serde_path_to_error::deserialize(&mut json).map_err(|e| problem::from_json_error(&e))?;
    json.end().map_err(|e| {
        Problem::invalid(
            "body",
            format!("trailing characters after the JSON value: {e}"),
        )
    })?;
    Ok(value)
}
