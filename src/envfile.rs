//! The environment a client in any language is handed (CONTRACTS section 2): the keys in
//! their order, and the file `serve` and `drill` write them to (mode 0600, shell-sourceable).

use std::io::Write as _;
use std::path::Path;

use crate::sim::Credentials;
use crate::subject::Endpoints;

/// The control API's address and token, when it is served.
#[derive(Clone, PartialEq, Eq)]
pub struct ControlAccess {
    /// `https://127.0.0.1:PORT/_maildrill`.
    pub url: String,
    /// The bearer token.
    pub token: String,
}

impl std::fmt::Debug for ControlAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlAccess")
            .field("url", &self.url)
            .field("token", &"[redacted]")
            .finish()
    }
}

/// `KEY=VALUE` pairs in file order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Environment(Vec<(String, String)>);

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.0.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_tuple("Environment").field(&keys).finish()
    }
}

/// Keys whose values are credentials: never printed.
pub const SECRET_KEYS: [&str; 2] = ["MAILDRILL_CLIENT_SECRET", "MAILDRILL_CONTROL_TOKEN"];

impl Environment {
    /// The keys of CONTRACTS section 2 for these credentials and endpoints, the CA at
    /// `ca_path`, and the control API when given.
    pub fn new(
        credentials: &Credentials,
        endpoints: &Endpoints,
        ca_path: &Path,
        control: Option<&ControlAccess>,
    ) -> Environment {
        let ca_path = std::path::absolute(ca_path).unwrap_or_else(|_| ca_path.to_path_buf());
        let mut env = Environment::default()
            .with("MAILDRILL_TENANT_ID", &credentials.tenant_id)
            .with("MAILDRILL_CLIENT_ID", &credentials.client_id)
            .with("MAILDRILL_CLIENT_SECRET", &credentials.secret)
            .with("MAILDRILL_MAILBOX", &credentials.mailbox)
            .with("MAILDRILL_CA_CERT", &ca_path.display().to_string())
            .with("MAILDRILL_AUTHORITY", &endpoints.authority)
            .with("MAILDRILL_TOKEN_URL", &endpoints.token_url)
            .with("MAILDRILL_GRAPH_URL", &endpoints.graph_url)
            .with("MAILDRILL_SMTP_HOST", &endpoints.smtp_host)
            .with("MAILDRILL_SMTP_PORT", &endpoints.smtp_port.to_string())
            .with("MAILDRILL_ALERTS_URL", &endpoints.alerts_url);
        if let Some(control) = control {
            env = env
                .with("MAILDRILL_CONTROL_URL", &control.url)
                .with("MAILDRILL_CONTROL_TOKEN", &control.token);
        }
        env
    }

    /// Adds (or replaces) a key.
    pub fn with(mut self, key: &str, value: &str) -> Environment {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.0.push((key.to_string(), value.to_string())),
        }
        self
    }

    /// The pairs in file order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// A key's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The file's text.
    pub fn render(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
    }

    /// Writes the file, readable by its owner only: it holds a client secret.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        write_private(path, self.render().as_bytes())
    }
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` applies only when the file is created; tighten an existing file too.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)
}
