//! `maildrill serve` with an app that has a certificate credential hands the client its
//! certificate, key and SHA-1 thumbprint (CONTRACTS section 2), and MSAL for Python gets a
//! token with them: a client assertion the token endpoint accepts.
//!
//! Needs a Python with msal and requests (`MAILDRILL_PYTHON`); without them only the files are
//! checked, unless `MAILDRILL_REQUIRE_CLIENTS=1`.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

mod common;

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The serve process and its directory, both gone when the test ends, passed or not: an
/// orphaned serve would hold the test's output open.
struct Serve {
    child: Child,
    dir: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// msal's confidential client with the certificate from the environment file.
const MSAL_WITH_CERTIFICATE: &str = r#"
import json, os, msal, requests
env = dict(l.strip().split("=", 1) for l in open(os.environ["ENV_FILE"]) if "=" in l)
session = requests.Session()
session.trust_env = False
session.verify = env["MAILDRILL_CA_CERT"]
app = msal.ConfidentialClientApplication(
    env["MAILDRILL_CLIENT_ID"],
    client_credential={"private_key": open(env["MAILDRILL_CLIENT_KEY"]).read(),
                       "thumbprint": env["MAILDRILL_CLIENT_CERT_THUMBPRINT"]},
    authority=env["MAILDRILL_AUTHORITY"], validate_authority=False,
    instance_discovery=False, http_client=session)
result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
print(json.dumps({"token_type": result.get("token_type"), "error": result.get("error"),
                  "codes": result.get("error_codes")}))
"#;

#[test]
fn serve_hands_out_the_apps_certificate_and_msal_signs_in_with_it() {
    let dir = std::env::temp_dir().join(format!("maildrill-cert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let env_file = dir.join("maildrill.env");
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/certificate.toml");
    // MSAL signs its assertion with the real time, and Entra refuses one outside its clock's
    // window (AADSTS700024): serve's clock starts at the real time.
    #[expect(
        clippy::disallowed_methods,
        reason = "the client under test reads the real clock, so serve starts there"
    )]
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let child = Command::new(env!("CARGO_BIN_EXE_maildrill"))
        .args(["serve", "--scenario", scenario, "--at", &now, "--env-file"])
        .arg(&env_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut serve = Serve { child, dir };
    let mut lines = std::io::BufReader::new(serve.child.stdout.take().unwrap()).lines();
    assert!(
        lines
            .next()
            .unwrap()
            .unwrap()
            .starts_with("maildrill serve:")
    );
    std::thread::spawn(move || lines.for_each(drop));
    let env: BTreeMap<String, String> = std::fs::read_to_string(&env_file)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let cert = std::fs::read_to_string(&env["MAILDRILL_CLIENT_CERT"]).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    use std::os::unix::fs::PermissionsExt as _;
    let key_mode = std::fs::metadata(&env["MAILDRILL_CLIENT_KEY"])
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let thumbprint = &env["MAILDRILL_CLIENT_CERT_THUMBPRINT"];
    assert!(thumbprint.len() == 40 && thumbprint.chars().all(|c| c.is_ascii_hexdigit()));
    if let Some(python) = common::python::python_with(&["msal", "requests"]) {
        let output = Command::new(python)
            .args(["-c", MSAL_WITH_CERTIFICATE])
            .env("ENV_FILE", &env_file)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains(r#""token_type": "Bearer""#), "{stdout}");
    }
    drop(serve);
}
