//! `maildrill client`: the bundled reference client as a process of its own, configured by
//! the environment of CONTRACTS section 2 (a drill's, or `serve`'s env file), taking messages
//! over HTTP and stopping on SIGTERM: the proof that a drill judges a process the way a replay
//! judges the client in memory.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex;

use super::process::READY;
use crate::seed::Seed;
use crate::subject::{Bundled, Endpoints, Message, Process, Profile, SecretHandle, Start, Subject};
use crate::time::{ClockExt as _, SharedClock, SystemClock};

/// How `maildrill client` runs.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Read the environment from this file instead of the process's own.
    pub env_file: Option<PathBuf>,
    /// How the client behaves.
    pub profile: Profile,
    /// Where it keeps its outbox (default `MAILDRILL_STATE_DIR`, else `./maildrill-client`).
    pub state_dir: Option<PathBuf>,
    /// The seed of its jitter.
    pub seed: Seed,
}

/// Why the client could not run.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A key is missing or wrong.
    #[error("{0}")]
    Environment(String),
    /// Reading or writing a file, or listening, failed.
    #[error("failed to {what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The client itself failed.
    #[error("the client failed: {0}")]
    Client(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClientError {
    let what = what.into();
    move |source| ClientError::Io { what, source }
}

/// The environment: a file's `KEY=VALUE` lines, or the process's variables.
fn environment(file: Option<&Path>) -> Result<impl Fn(&str) -> Option<String>, ClientError> {
    let pairs: Option<Vec<(String, String)>> = match file {
        None => None,
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(io(format!("read {}", path.display())))?;
            Some(
                text.lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect(),
            )
        }
    };
    Ok(move |key: &str| match &pairs {
        Some(pairs) => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
        None => std::env::var(key).ok(),
    })
}

fn need(get: &impl Fn(&str) -> Option<String>, key: &str) -> Result<String, ClientError> {
    get(key).ok_or_else(|| ClientError::Environment(format!("{key} is not set")))
}

/// What the client is handed, read from the environment.
fn start(options: &ClientOptions, clock: SharedClock) -> Result<Start, ClientError> {
    let get = environment(options.env_file.as_deref())?;
    let ca_path = need(&get, "MAILDRILL_CA_CERT")?;
    let ca_pem = std::fs::read_to_string(&ca_path).map_err(io(format!("read {ca_path}")))?;
    let port = need(&get, "MAILDRILL_SMTP_PORT")?;
    let endpoints = Endpoints {
        authority: need(&get, "MAILDRILL_AUTHORITY")?,
        token_url: need(&get, "MAILDRILL_TOKEN_URL")?,
        graph_url: need(&get, "MAILDRILL_GRAPH_URL")?,
        smtp_host: need(&get, "MAILDRILL_SMTP_HOST")?,
        smtp_port: port
            .parse()
            .map_err(|_| ClientError::Environment(format!("MAILDRILL_SMTP_PORT={port}")))?,
        alerts_url: need(&get, "MAILDRILL_ALERTS_URL")?,
        ca_pem,
    };
    let state_dir = options
        .state_dir
        .clone()
        .or_else(|| get("MAILDRILL_STATE_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("maildrill-client"));
    std::fs::create_dir_all(&state_dir).map_err(io(format!("create {}", state_dir.display())))?;
    let secret = secret(&get, &state_dir)?;
    let generation = get("MAILDRILL_GENERATION")
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    Ok(Start {
        endpoints,
        tenant_id: need(&get, "MAILDRILL_TENANT_ID")?,
        client_id: need(&get, "MAILDRILL_CLIENT_ID")?,
        mailbox: need(&get, "MAILDRILL_MAILBOX")?,
        secret,
        certificate: None,
        state_dir,
        clock,
        rng: options.seed.stream(&format!("subject.{generation}")),
        memory: None,
        settings: super::settings::import(&get).map_err(ClientError::Environment)?,
        generation,
        control: None,
        delegated: None,
    })
}

/// The secret file the drill rotates, or (against `serve`) one written from the value.
fn secret(
    get: &impl Fn(&str) -> Option<String>,
    state_dir: &Path,
) -> Result<SecretHandle, ClientError> {
    if let Some(path) = get("MAILDRILL_CLIENT_SECRET_FILE") {
        return SecretHandle::open(PathBuf::from(&path)).map_err(io(format!("read {path}")));
    }
    let value = need(get, "MAILDRILL_CLIENT_SECRET")?;
    let path = state_dir.join("client.secret");
    SecretHandle::create(path, &value).map_err(io("write the secret file"))
}

/// Runs the client until SIGTERM (or Ctrl-C): prints `MAILDRILL_READY submit=URL` once it
/// takes messages at `POST URL`.
pub async fn run(options: ClientOptions) -> Result<(), ClientError> {
    let clock: SharedClock = Arc::new(SystemClock);
    let start = start(&options, clock.clone())?;
    let synced_file = environment(options.env_file.as_deref())?("MAILDRILL_SYNCED_FILE");
    let process = Bundled::new(options.profile)
        .start(start)
        .await
        .map_err(|e| ClientError::Client(e.to_string()))?;
    let process = Arc::new(Mutex::new(Some(process)));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .map_err(io("listen on 127.0.0.1"))?;
    let addr = listener
        .local_addr()
        .map_err(io("read the bound address"))?;
    // The ready line is the drill's signal: print it only once messages are taken.
    println!("{READY} submit=http://{addr}/messages");
    let accepting = tokio::spawn(accept(listener, process.clone()));
    let syncing = synced_file.map(|path| tokio::spawn(keep_synced(process.clone(), path, clock)));
    terminated().await;
    accepting.abort();
    if let Some(syncing) = syncing {
        syncing.abort();
    }
    let stopped = process.lock().await.take();
    if let Some(process) = stopped {
        process
            .stop()
            .await
            .map_err(|e| ClientError::Client(e.to_string()))?;
    }
    Ok(())
}

/// SIGTERM or Ctrl-C.
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

type Shared = Arc<Mutex<Option<crate::subject::bundled::BundledProcess>>>;

/// Rewrites the synced file each second with what the client synced (a drill reads it).
async fn keep_synced(process: Shared, path: String, clock: SharedClock) {
    loop {
        clock.sleep(std::time::Duration::from_secs(1)).await;
        let ids = match process.lock().await.as_ref() {
            Some(process) => process.synced(),
            None => return,
        };
        let partial = format!("{path}.partial");
        let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
        if std::fs::write(&partial, text).is_ok() {
            let _ = std::fs::rename(&partial, &path);
        }
    }
}

async fn accept(listener: tokio::net::TcpListener, process: Shared) {
    while let Ok((stream, _)) = listener.accept().await {
        let process = process.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let process = process.clone();
                async move { Ok::<_, std::convert::Infallible>(take(request, &process).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `POST /messages` with a message as JSON: `202` once it is in the outbox.
async fn take(request: hyper::Request<Incoming>, process: &Shared) -> hyper::Response<Full<Bytes>> {
    let reply = |status: u16, text: &str| {
        hyper::Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(text.to_string())))
            .expect("static response parts are valid")
    };
    if request.uri().path() != "/messages" {
        return reply(404, "not found");
    }
    if request.method() != hyper::Method::POST {
        return reply(405, "POST a message");
    }
    let Ok(body) = request.into_body().collect().await else {
        return reply(400, "unreadable body");
    };
    let Ok(message) = serde_json::from_slice::<MessageJson>(&body.to_bytes()) else {
        return reply(400, "expected {message_id, from, to, subject, body}");
    };
    let mut guard = process.lock().await;
    let Some(running) = guard.as_mut() else {
        return reply(503, "stopping");
    };
    match running.submit(message.into()).await {
        Ok(()) => reply(202, "queued"),
        Err(e) => reply(500, &e.to_string()),
    }
}

/// A message as the drill posts it.
#[derive(Debug, serde::Deserialize)]
struct MessageJson {
    message_id: String,
    from: String,
    to: Vec<String>,
    subject: String,
    body: String,
}

impl From<MessageJson> for Message {
    fn from(m: MessageJson) -> Message {
        Message {
            message_id: m.message_id,
            from: m.from,
            to: m.to,
            subject: m.subject,
            body: m.body,
        }
    }
}
