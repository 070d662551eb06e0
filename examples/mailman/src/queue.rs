//! The durable queue: one JSON file a message in a directory, named so that names sort in
//! arrival order, written to a temporary name and renamed so a crash never leaves half a file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outgoing {
    /// `<...@...>`: the id the message is sent under.
    pub message_id: String,
    /// Sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

impl Outgoing {
    /// The message as lettre builds it.
    pub fn to_email(&self) -> Result<lettre::Message, Box<dyn std::error::Error + Send + Sync>> {
        let mut builder = lettre::Message::builder()
            .from(self.from.parse()?)
            .subject(self.subject.clone())
            .message_id(Some(self.message_id.clone()));
        for to in &self.to {
            builder = builder.to(to.parse()?);
        }
        Ok(builder.body(self.body.clone())?)
    }
}

/// Messages waiting to be sent.
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    next: AtomicU64,
}

impl Queue {
    /// Opens (or creates) the queue in `dir`.
    pub fn open(dir: PathBuf) -> std::io::Result<Queue> {
        std::fs::create_dir_all(&dir)?;
        let last = Self::names(&dir)?
            .last()
            .and_then(|name| name.trim_end_matches(".json").parse::<u64>().ok())
            .unwrap_or(0);
        Ok(Queue {
            dir,
            next: AtomicU64::new(last + 1),
        })
    }

    fn names(dir: &PathBuf) -> std::io::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(dir)?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".json"))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Adds a message.
    pub fn push(&self, message: &Outgoing) -> std::io::Result<()> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let name = format!("{n:020}.json");
        let partial = self.dir.join(format!("{name}.partial"));
        std::fs::write(&partial, serde_json::to_vec(message)?)?;
        std::fs::rename(partial, self.dir.join(name))
    }

    /// The oldest message and its name.
    pub fn oldest(&self) -> std::io::Result<Option<(String, Outgoing)>> {
        for name in Self::names(&self.dir)? {
            let bytes = std::fs::read(self.dir.join(&name))?;
            if let Ok(message) = serde_json::from_slice(&bytes) {
                return Ok(Some((name, message)));
            }
        }
        Ok(None)
    }

    /// Forgets a sent message.
    pub fn remove(&self, name: &str) -> std::io::Result<()> {
        std::fs::remove_file(self.dir.join(name))
    }
}
