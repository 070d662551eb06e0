//! Where the client credential comes from: a secret in a file (re-read, so a rotation needs no
//! redeploy), an environment variable or a value, or a certificate (`client::certificate`).
//! The secret never shows in `Debug`, `Display` or errors.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::time::SharedClock;

/// A client secret. Its `Debug` shows only its first three characters, like the portal's hint.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first three characters, as Entra's `hint` shows them.
    pub fn hint(&self) -> String {
        self.0.chars().take(3).collect()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({}...)", self.hint())
    }
}

/// The secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error("failed to read the client secret from {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The variable is not set.
    #[error("the environment variable {0} holding the client secret is not set")]
    Env(String),
    /// The source holds an empty value.
    #[error("the client secret is empty")]
    Empty,
    /// The certificate could not be read.
    #[error(transparent)]
    Certificate(#[from] super::certificate::CertificateError),
}

/// Where the credential lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A fixed value (tests, or a secret handed over at start).
    Value(Secret),
    /// A file holding the secret (trimmed), read on every fetch so a new value is noticed.
    File(PathBuf),
    /// An environment variable, read on every fetch.
    Env(String),
    /// No secret: a certificate signs client assertions. [`SecretSource::current`] gives its
    /// identity (`x5t#S256:` and the SHA-256 thumbprint), never sent, so a new certificate
    /// counts as a new credential wherever a new secret value does.
    Certificate(super::certificate::CertificateSource),
    /// Another source read at most once per interval of the client's clock, the value shared
    /// by every reader (a delegated client's worker and tokens per user would otherwise read
    /// the secret file hundreds of times a second while the app's credential is refused).
    Throttled(Throttled),
}

/// A [`SecretSource`] read at most once per interval, shared by clones.
#[derive(Clone)]
pub struct Throttled {
    inner: Arc<ThrottledInner>,
}

struct ThrottledInner {
    source: SecretSource,
    clock: SharedClock,
    every: Duration,
    last: Mutex<Option<(tokio::time::Instant, Result<Secret, SecretError>)>>,
}

impl Throttled {
    /// `source`, read again only once `every` has passed on `clock` since the last read.
    pub fn new(source: SecretSource, clock: SharedClock, every: Duration) -> Throttled {
        Throttled {
            inner: Arc::new(ThrottledInner {
                source,
                clock,
                every,
                last: Mutex::new(None),
            }),
        }
    }

    fn current(&self) -> Result<Secret, SecretError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut last = inner.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.as_ref() {
            Some((at, value)) if now < *at + inner.every => value.clone(),
            _ => {
                let value = inner.source.current();
                *last = Some((now, value.clone()));
                value
            }
        }
    }
}

impl fmt::Debug for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttled")
            .field("source", &self.inner.source)
            .field("every", &self.inner.every)
            .finish_non_exhaustive()
    }
}

/// Clones of one throttled source are the same source.
impl PartialEq for Throttled {
    fn eq(&self, other: &Throttled) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Throttled {}

impl SecretSource {
    /// The current secret (for a certificate, its identity).
    pub fn current(&self) -> Result<Secret, SecretError> {
        let value = match self {
            SecretSource::Throttled(throttled) => return throttled.current(),
            SecretSource::Certificate(source) => {
                format!("x5t#S256:{}", source.current()?.sha256_hex())
            }
            SecretSource::Value(secret) => secret.0.clone(),
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| SecretError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
                .trim()
                .to_string(),
            SecretSource::Env(name) => {
                std::env::var(name).map_err(|_| SecretError::Env(name.clone()))?
            }
        };
        if value.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Secret(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::ClockExt as _;

    #[test]
    fn debug_shows_only_the_hint() {
        let secret = Secret::new("abc8Q~very-secret");
        assert_eq!(format!("{secret:?}"), "Secret(abc...)");
    }

    #[test]
    fn a_file_source_sees_a_rotation() {
        let path = std::env::temp_dir().join(format!("maildrill-secret-{}", std::process::id()));
        std::fs::write(&path, "old-value\n").unwrap();
        let source = SecretSource::File(path.clone());
        assert_eq!(source.current().unwrap().expose(), "old-value");
        std::fs::write(&path, "new-value").unwrap();
        assert_eq!(source.current().unwrap().expose(), "new-value");
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(source.current(), Err(SecretError::File { .. })));
    }

    #[test]
    fn a_throttled_source_reads_once_per_interval_for_every_clone() {
        crate::time::replay_runtime().unwrap().block_on(async {
            let path =
                std::env::temp_dir().join(format!("maildrill-throttled-{}", std::process::id()));
            std::fs::write(&path, "old-value").unwrap();
            let start = "2025-02-14T11:30:00Z".parse().unwrap();
            let clock = crate::time::VirtualClock::starting_at(start).shared();
            let file = SecretSource::File(path.clone());
            let one = SecretSource::Throttled(Throttled::new(
                file,
                clock.clone(),
                Duration::from_secs(1),
            ));
            let other = one.clone();
            assert_eq!(one.current().unwrap().expose(), "old-value");
            std::fs::write(&path, "new-value").unwrap();
            assert_eq!(
                other.current().unwrap().expose(),
                "old-value",
                "read within the second"
            );
            clock.sleep(Duration::from_secs(1)).await;
            assert_eq!(other.current().unwrap().expose(), "new-value");
            assert_eq!(one, other);
            std::fs::remove_file(&path).unwrap();
        });
    }
}
