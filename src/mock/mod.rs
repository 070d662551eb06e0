//! The mocks: plain services over the tenant and the clock.
//!
//! [`HttpMocks`] answers an HTTP request for the Entra token endpoint or Microsoft Graph with a
//! [`Reply`]: a response plus how to deliver it (now, after a virtual delay, cut short, not at
//! all). It knows nothing of sockets; the wirings in [`crate::wiring`] carry the bytes and
//! perform the delays on the clock. Every request is journaled with its virtual time.

pub mod alerts;
pub mod authorize;
pub mod consent;
pub mod entra;
pub mod grant;
pub mod graph;
pub mod mime;
pub mod smtp;
pub mod wire;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::fault::{
    CatalogueReply, Fault, FaultError, FaultId, FaultKind, FaultSet, InjectedFault, Party,
    SharedFaults, Target,
};
use crate::journal::{Body, Facts, Journal, JournalEntry, MockName};
use crate::seed::{Seed, uuid_v4};
use crate::tenant::{Directory, SharedDirectory};
use crate::time::SharedClock;
use wire::{ReplyDates, Vars};

/// An HTTP request as the mocks see it.
pub type HttpRequest = http::Request<Bytes>;
/// An HTTP response as the mocks produce it.
pub type HttpResponse = http::Response<Bytes>;

/// How a reply leaves the mock.
#[derive(Debug)]
pub enum Action {
    /// Send the response.
    Respond(HttpResponse),
    /// Send the first `n` bytes of the serialised response, then close.
    Truncate(HttpResponse, usize),
    /// Close the connection without a reply.
    Reset,
    /// Never answer.
    Hang,
}

/// A mock's answer: an action, after a delay on the clock.
#[derive(Debug)]
pub struct Reply {
    /// Wait this long on the clock before acting.
    pub delay: Duration,
    /// What to do then.
    pub action: Action,
    /// Held until the reply is delivered, so in-flight limits see the request.
    pub in_flight: Option<InFlight>,
}

/// The public base URLs the mocks put in links and documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Scheme and authority of the token endpoint, e.g. `https://login.microsoftonline.com`.
    pub login_base: String,
    /// Scheme and authority of Graph, e.g. `https://graph.microsoft.com`.
    pub graph_base: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            login_base: "https://login.microsoftonline.com".into(),
            graph_base: "https://graph.microsoft.com".into(),
        }
    }
}

/// Settings of the HTTP mocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpMocksConfig {
    /// Seed for request ids and fault probabilities.
    pub seed: Seed,
    /// Base URLs in links.
    pub endpoints: Endpoints,
    /// How long Graph takes to accept a `sendMail` (real sends take a fraction of a second;
    /// the 4-concurrent limit only bites when it is above zero or faults add latency).
    pub send_mail_latency: Duration,
    /// Concurrent `sendMail` requests allowed per app and mailbox (Outlook: 4).
    pub mailbox_concurrency: usize,
    /// Disables the per-mailbox limits (load tests).
    pub limits_off: bool,
}

impl Default for HttpMocksConfig {
    fn default() -> Self {
        HttpMocksConfig {
            seed: Seed(0),
            endpoints: Endpoints::default(),
            send_mail_latency: Duration::ZERO,
            mailbox_concurrency: 4,
            limits_off: false,
        }
    }
}

/// Counts requests in flight per key; the guard releases its slot when dropped.
#[derive(Debug, Clone, Default)]
pub struct InFlightCounter(Arc<Mutex<BTreeMap<String, usize>>>);

/// A held in-flight slot.
#[derive(Debug)]
pub struct InFlight {
    counter: InFlightCounter,
    key: String,
}

impl InFlightCounter {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot unless `limit` are taken.
    pub fn try_acquire(&self, key: &str, limit: usize) -> Option<InFlight> {
        let mut map = self.lock();
        let count = map.entry(key.to_string()).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(InFlight {
            counter: self.clone(),
            key: key.to_string(),
        })
    }

    /// Slots taken for `key`.
    pub fn current(&self, key: &str) -> usize {
        self.lock().get(key).copied().unwrap_or(0)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = self.counter.lock();
        if let Some(count) = map.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// The Entra and Graph mocks over one directory, clock, journal and fault set.
#[derive(Debug, Clone)]
pub struct HttpMocks {
    directory: SharedDirectory,
    clock: SharedClock,
    journal: Journal,
    faults: SharedFaults,
    ids: Arc<Mutex<Ids>>,
    in_flight: InFlightCounter,
    config: Arc<HttpMocksConfig>,
}

/// Request ids, and the reply date texts of the current second (formatting dates is a
/// noticeable share of a reply under load, and they change once a second).
///
/// A request's ids come from the request itself (its instant, line, body and
/// `client-request-id`, and how many identical requests came before it at that instant), not
/// from one stream in arrival order: requests that arrive at the same instant are concurrent,
/// and the two wirings may serve them in different orders.
#[derive(Debug)]
struct Ids {
    seed: Seed,
    instant: Option<DateTime<Utc>>,
    seen: BTreeMap<[u8; 32], u32>,
    dates: Option<(i64, Arc<ReplyDates>)>,
}

impl Ids {
    /// The ids of `request` at `now`: 32 bytes, two GUIDs' worth.
    fn request_ids(&mut self, now: DateTime<Utc>, request: &HttpRequest) -> [u8; 32] {
        if self.instant != Some(now) {
            self.instant = Some(now);
            self.seen.clear();
        }
        let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let client_request_id = request
            .headers()
            .get("client-request-id")
            .map_or(&b""[..], |v| v.as_bytes());
        let key = self.seed.digest_for(
            "http.request",
            &[
                request.method().as_str().as_bytes(),
                target.as_bytes(),
                &entra::id_body(request.body()),
                client_request_id,
            ],
        );
        let occurrence = self.seen.entry(key).or_default();
        *occurrence += 1;
        self.seed.digest_for(
            "http.request-ids",
            &[
                &now.timestamp_micros().to_le_bytes(),
                &key,
                &occurrence.to_le_bytes(),
            ],
        )
    }

    /// The reply dates of `now`'s second, shared by every reply in it.
    fn dates(&mut self, now: DateTime<Utc>) -> Arc<ReplyDates> {
        let second = now.timestamp();
        match &self.dates {
            Some((s, dates)) if *s == second => dates.clone(),
            _ => {
                let dates = Arc::new(ReplyDates::new(now));
                self.dates = Some((second, dates.clone()));
                dates
            }
        }
    }
}

/// The two 16-byte halves of a request's id bytes.
fn halves(bytes: [u8; 32]) -> [[u8; 16]; 2] {
    let (first, second) = bytes.split_at(16);
    [
        first.try_into().expect("16 of 32 bytes"),
        second.try_into().expect("16 of 32 bytes"),
    ]
}

/// What a handler gets: the locked directory, the instant, and reply variables.
pub(crate) struct Ctx<'a> {
    pub directory: &'a mut Directory,
    pub now: DateTime<Utc>,
    pub vars: Vars,
    pub config: &'a HttpMocksConfig,
    pub in_flight: &'a InFlightCounter,
    /// Set by `fail_but_deliver`: deliver, then answer with this instead of 202.
    pub fail_after_delivery: Option<(CatalogueReply, Option<String>)>,
    /// A slot the handler took, released when the reply is delivered.
    pub held: Option<InFlight>,
    /// A delay the handler asks for (sendMail's processing time).
    pub delay: Duration,
    /// The user a delegated token request is for, for the journal.
    pub user: Option<String>,
}

impl HttpMocks {
    /// Mocks over a directory and a clock, journaling into `journal`.
    pub fn new(
        directory: SharedDirectory,
        clock: SharedClock,
        journal: Journal,
        config: HttpMocksConfig,
    ) -> HttpMocks {
        HttpMocks {
            directory,
            clock,
            journal,
            faults: Arc::new(Mutex::new(FaultSet::new(config.seed))),
            ids: Arc::new(Mutex::new(Ids {
                seed: config.seed,
                instant: None,
                seen: BTreeMap::new(),
                dates: None,
            })),
            in_flight: InFlightCounter::default(),
            config: Arc::new(config),
        }
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The directory.
    pub fn directory(&self) -> &SharedDirectory {
        &self.directory
    }

    /// The clock.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// In-flight counters (Graph `sendMail` per app and mailbox).
    pub fn in_flight(&self) -> &InFlightCounter {
        &self.in_flight
    }

    fn faults(&self) -> MutexGuard<'_, FaultSet> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fault set, to share with the SMTP mock so one schedule drives every mock.
    pub fn faults_handle(&self) -> SharedFaults {
        self.faults.clone()
    }

    /// Adds a fault.
    pub fn inject(&self, fault: Fault) -> Result<FaultId, FaultError> {
        self.faults().inject(fault)
    }

    /// Removes a fault.
    pub fn clear(&self, id: FaultId) -> bool {
        self.faults().clear(id)
    }

    /// Removes every fault on a target.
    pub fn clear_target(&self, target: Target) {
        self.faults().clear_target(target)
    }

    /// Removes every fault.
    pub fn clear_all(&self) {
        self.faults().clear_all()
    }

    /// The faults in force, in injection order.
    pub fn fault_list(&self) -> Vec<InjectedFault> {
        self.faults().list()
    }

    /// Answers one request.
    #[expect(
        clippy::too_many_lines,
        reason = "one request through routing, faults, the mock and the journal, in order"
    )]
    pub fn handle(&self, request: HttpRequest) -> Reply {
        let now = self.clock.now_utc();
        let (mock, operation) = route(request.uri().path());
        let target = match mock {
            MockName::Graph => Target::Graph,
            MockName::Alerts => Target::Alerts,
            _ => Target::Entra,
        };
        let mut directory = Directory::lock(&self.directory);
        let mut faults = self.faults();
        // Who a request is from costs a form parse or a token lookup: only for scoped faults.
        let (app, mailbox) = match mock {
            _ if !faults.any_scoped() => (None, None),
            MockName::Graph => graph::requesting_party(&directory, &request),
            MockName::Alerts => (None, None),
            _ => (entra::requesting_app(&request), None),
        };
        let party = Party {
            app: app.as_deref(),
            mailbox: mailbox.as_deref(),
        };
        let fault = faults.decide(target, operation, party, now);
        drop(faults);
        let mut vars = self.vars(mock, &request, now);
        // Natural replies name what they need themselves; a forced catalogue reply reads
        // the request for the app id, tenant, user and so on.
        if matches!(
            fault,
            Some(FaultKind::Respond { .. } | FaultKind::FailButDeliver { .. })
        ) {
            vars = match mock {
                MockName::Graph => graph::request_vars(vars, &request),
                _ => entra::request_vars(vars, &request, &directory, now),
            };
        }
        let mut ctx = Ctx {
            directory: &mut directory,
            now,
            vars,
            config: &self.config,
            in_flight: &self.in_flight,
            fail_after_delivery: None,
            held: None,
            delay: Duration::ZERO,
            user: None,
        };
        let mut delay = Duration::ZERO;
        let action = match &fault {
            None => Action::Respond(serve(mock, &mut ctx, &request)),
            Some(FaultKind::Latency { delay: extra }) => {
                delay = *extra;
                Action::Respond(serve(mock, &mut ctx, &request))
            }
            // A send that hangs has been taken: the reply is lost, not the message (the trap a
            // client must not fall into by sending it again, or by counting it lost).
            Some(FaultKind::Timeout) if operation == "send-mail" => {
                let _taken = serve(mock, &mut ctx, &request);
                Action::Hang
            }
            Some(FaultKind::Timeout) => Action::Hang,
            Some(FaultKind::ResetPeer) => Action::Reset,
            Some(FaultKind::LimitData { bytes }) => {
                Action::Truncate(serve(mock, &mut ctx, &request), *bytes)
            }
            Some(FaultKind::Respond { reply, retry_after }) => {
                Action::Respond(catalogue_reply(*reply, &ctx.vars, retry_after.as_deref()))
            }
            Some(FaultKind::Bandwidth { bytes_per_second }) => {
                let response = serve(mock, &mut ctx, &request);
                let bytes = (request.body().len() + response.body().len()) as u64;
                delay = std::time::Duration::from_secs_f64(
                    bytes as f64 / (*bytes_per_second).max(1) as f64,
                );
                Action::Respond(response)
            }
            // validate() keeps these off HTTP targets; the nearest HTTP meaning is a reset.
            Some(FaultKind::DropAfterData | FaultKind::TlsFailure) => Action::Reset,
            Some(FaultKind::MalformedBody) => {
                Action::Respond(malformed(serve(mock, &mut ctx, &request)))
            }
            Some(FaultKind::FailButDeliver { reply, retry_after }) => {
                ctx.fail_after_delivery = Some((*reply, retry_after.clone()));
                Action::Respond(serve(mock, &mut ctx, &request))
            }
        };
        delay += ctx.delay;
        let in_flight = ctx.held.take();
        let user = ctx.user.take();
        drop(directory);
        self.record(
            Exchange {
                at: now,
                mock,
                operation,
                user,
            },
            &request,
            &action,
            delay,
            fault.as_ref(),
        );
        Reply {
            delay,
            action,
            in_flight,
        }
    }

    fn vars(&self, mock: MockName, request: &HttpRequest, now: DateTime<Utc>) -> Vars {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let [first, second]: [[u8; 16]; 2] = halves(ids.request_ids(now, request));
        let request_id = uuid_v4(first);
        let client_request_id = request
            .headers()
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let vars = Vars::default().with_dates(ids.dates(now));
        match mock {
            MockName::Graph => vars
                .set(
                    "client_request_id",
                    client_request_id.unwrap_or_else(|| request_id.clone()),
                )
                .set("request_id", request_id),
            _ => vars
                .set(
                    "correlation_id",
                    client_request_id.unwrap_or_else(|| uuid_v4(second)),
                )
                .set("trace_id", request_id),
        }
    }

    fn record(
        &self,
        exchange: Exchange,
        request: &HttpRequest,
        action: &Action,
        delay: Duration,
        fault: Option<&FaultKind>,
    ) {
        let (status, response_body, delivery): (_, Body, Cow<'static, str>) = match action {
            Action::Respond(r) => (Some(r.status().as_u16()), body_of(r), "respond".into()),
            Action::Truncate(r, n) => (
                Some(r.status().as_u16()),
                body_of(r),
                format!("truncate {n}").into(),
            ),
            Action::Reset => (None, Body::default(), "reset".into()),
            Action::Hang => (None, Body::default(), "hang".into()),
        };
        let delivery = if delay.is_zero() {
            delivery
        } else {
            format!("{delivery} after {}", humantime::format_duration(delay)).into()
        };
        let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let retry_after = match action {
            Action::Respond(r) | Action::Truncate(r, _) => r
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
            Action::Reset | Action::Hang => None,
        };
        let Exchange {
            at,
            mock,
            operation,
            user,
        } = exchange;
        self.journal.record(JournalEntry {
            seq: 0,
            at,
            mock,
            operation,
            user,
            request: format!("{} {}", request.method(), target),
            request_body: Body::new(
                request.body(),
                request.headers().get(http::header::CONTENT_TYPE),
            ),
            delivery,
            status,
            response_body,
            fault: fault.map(|f| f.to_string()),
            facts: Facts {
                delay,
                retry_after,
                connection: 0,
            },
        });
    }
}

/// What the journal says a request was: when, which mock and operation, for which user.
struct Exchange {
    at: DateTime<Utc>,
    mock: MockName,
    operation: &'static str,
    user: Option<String>,
}

fn body_of(response: &HttpResponse) -> Body {
    Body::owned(
        response.body().clone(),
        response.headers().get(http::header::CONTENT_TYPE),
    )
}

/// A request header as text, if present and valid.
pub(crate) fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Which mock and operation a path belongs to.
pub fn route(path: &str) -> (MockName, &'static str) {
    if path == "/v2/enqueue" {
        (MockName::Alerts, alerts::operation(path))
    } else if path == "/v1.0" || path.starts_with("/v1.0/") {
        (MockName::Graph, graph::operation(path))
    } else {
        (MockName::Entra, entra::operation(path))
    }
}

fn serve(mock: MockName, ctx: &mut Ctx<'_>, request: &HttpRequest) -> HttpResponse {
    match mock {
        MockName::Graph => graph::handle(ctx, request),
        MockName::Alerts => alerts::handle(ctx, request),
        _ => entra::handle(ctx, request),
    }
}

/// Renders a catalogue reply with this request's variables.
pub(crate) fn catalogue_reply(
    reply: CatalogueReply,
    vars: &Vars,
    retry_after: Option<&str>,
) -> HttpResponse {
    match reply {
        CatalogueReply::Entra(error) => wire::entra_error(error, vars),
        CatalogueReply::EntraThrottled => {
            let mut response = wire::entra_throttled(vars);
            if let Some(value) = retry_after {
                set_retry_after(&mut response, value);
            }
            response
        }
        CatalogueReply::Graph(error) => wire::graph_error(error, vars, None, retry_after),
        CatalogueReply::GraphHtmlUnavailable => wire::graph_html_unavailable(),
        // validate() keeps SMTP replies off HTTP targets; answer as a front end would.
        CatalogueReply::Smtp(_) => wire::graph_html_unavailable(),
    }
}

fn set_retry_after(response: &mut HttpResponse, value: &str) {
    let headers = response.headers_mut();
    headers.remove("retry-after");
    if let Ok(value) = http::HeaderValue::from_str(value)
        && !value.is_empty()
    {
        headers.insert("retry-after", value);
    }
}

/// A `200` whose body stops halfway: parseable by nothing.
fn malformed(response: HttpResponse) -> HttpResponse {
    let (mut parts, body) = response.into_parts();
    parts.status = http::StatusCode::OK;
    let cut = if body.len() > 1 {
        body.slice(..body.len() / 2)
    } else {
        Bytes::from_static(b"{\"")
    };
    parts.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    http::Response::from_parts(parts, cut)
}
