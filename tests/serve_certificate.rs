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

use std::process::{Command, Stdio};

use common::serve::ServeProcess;

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
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/certificate.toml");
    // MSAL signs its assertion with the real time, and Entra refuses one outside its clock's
    // window (AADSTS700024): serve's clock starts at the real time.
    #[expect(
        clippy::disallowed_methods,
        reason = "the client under test reads the real clock, so serve starts there"
    )]
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let serve = ServeProcess::start("cert", &["--scenario", scenario, "--at", &now]);
    let env = &serve.env;
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
            .env("ENV_FILE", serve.env_file())
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
