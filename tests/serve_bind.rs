//! Where `maildrill serve` can be reached from: loopback only by default, another address only
//! with `--bind`, and then the control API still wants its token (issue 13, CONTRACTS section 9).
//!
//! Needs an address of this host other than loopback (the one a route to a documentation
//! address leaves from); a machine with none says so and skips.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

use std::net::IpAddr;
use std::path::PathBuf;

use maildrill::serve::{ServeOptions, Served};

/// This host's address on its default route, if it has one: `connect` on UDP sends nothing.
fn host_address() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

async fn serve(name: &str, bind: Option<IpAddr>) -> (Served, PathBuf) {
    let dir = std::env::temp_dir().join(format!("maildrill-bind-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let options = ServeOptions {
        at: Some("2025-02-14T11:00:00Z".parse().unwrap()),
        env_file: dir.join("maildrill.env"),
        bind,
        ..ServeOptions::default()
    };
    let served = maildrill::serve::start(&options, maildrill::serve::real_time_clock)
        .await
        .unwrap();
    (served, dir)
}

fn client(served: &Served) -> reqwest::Client {
    let ca = std::fs::read(served.env.get("MAILDRILL_CA_CERT").unwrap()).unwrap();
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .no_proxy()
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_no_other_address_reaches_serve() {
    let Some(host) = host_address() else {
        eprintln!("skipped: this machine has no address but loopback");
        return;
    };
    let (served, dir) = serve("default", None).await;
    let control = served.env.get("MAILDRILL_CONTROL_URL").unwrap();
    assert!(control.starts_with("https://127.0.0.1:"), "{control}");
    let port = served.http_addr.port();
    let refused = tokio::net::TcpStream::connect((host, port)).await;
    assert!(refused.is_err(), "{host}:{port} was reachable");
    served.run(async {}).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_bind_another_host_reaches_the_mocks_and_the_control_api_wants_its_token() {
    let Some(host) = host_address() else {
        eprintln!("skipped: this machine has no address but loopback");
        return;
    };
    let (served, dir) = serve("bound", Some(host)).await;
    let env = |key| served.env.get(key).unwrap().to_string();
    let control = env("MAILDRILL_CONTROL_URL");
    assert!(
        control.starts_with(&format!("https://{host}:")),
        "{control}"
    );
    assert_eq!(env("MAILDRILL_SMTP_HOST"), host.to_string());
    let http = client(&served);
    // From this host's own address, not loopback: the server certificate names it.
    let clock = format!("{control}/clock");
    let anonymous = http.get(&clock).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let token = env("MAILDRILL_CONTROL_TOKEN");
    let read = http.get(&clock).bearer_auth(&token).send().await.unwrap();
    assert_eq!(read.status(), 200);
    let granted = http
        .post(env("MAILDRILL_TOKEN_URL"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &env("MAILDRILL_CLIENT_ID")),
            ("client_secret", &env("MAILDRILL_CLIENT_SECRET")),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), 200);
    let loopback = tokio::net::TcpStream::connect(("127.0.0.1", served.http_addr.port())).await;
    assert!(loopback.is_err(), "bound to {host} only, loopback answered");
    served.run(async {}).await;
    let _ = std::fs::remove_dir_all(dir);
}
