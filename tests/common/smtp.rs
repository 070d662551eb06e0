//! A scripted SMTP client for tests: writes every line it sends and hears, with virtual times.

use std::time::Duration;

use maildrill::time::{ClockExt as _, rfc3339};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

use super::Sim;

/// A scripted SMTP client that writes down everything, with virtual times.
pub struct Client<'a> {
    pub sim: &'a Sim,
    pub stream: DuplexStream,
    buffer: Vec<u8>,
    pub transcript: Vec<String>,
    pub closed: bool,
}

impl<'a> Client<'a> {
    pub fn new(sim: &'a Sim, stream: DuplexStream) -> Client<'a> {
        Client {
            sim,
            stream,
            buffer: Vec::new(),
            transcript: Vec::new(),
            closed: false,
        }
    }

    /// The last line of the transcript.
    pub fn last(&self) -> &str {
        self.transcript.last().map_or("", String::as_str)
    }

    fn log(&mut self, line: String) {
        let at = rfc3339(self.sim.clock.now_utc());
        self.transcript.push(format!("{} {line}", &at[11..]));
    }

    /// Reads one reply (up to a `NNN ` line), giving up after 60 s on the virtual clock.
    pub async fn reply(&mut self) {
        if self.closed {
            return;
        }
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
                let last = text.as_bytes().get(3) != Some(&b'-');
                self.log(format!("S: {text}"));
                if last {
                    return;
                }
                continue;
            }
            let mut chunk = [0u8; 1024];
            let read = self
                .sim
                .clock
                .timeout(Duration::from_secs(60), self.stream.read(&mut chunk))
                .await;
            match read {
                Err(_) => {
                    self.log("S: <no reply within 60s>".into());
                    self.closed = true;
                    return;
                }
                Ok(Ok(0)) | Ok(Err(_)) => {
                    if !self.buffer.is_empty() {
                        let rest = String::from_utf8_lossy(&self.buffer).into_owned();
                        self.log(format!("S: {rest}<cut>"));
                        self.buffer.clear();
                    }
                    self.log("S: <connection closed>".into());
                    self.closed = true;
                    return;
                }
                Ok(Ok(n)) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub async fn send(&mut self, line: &str) {
        if self.closed {
            return;
        }
        let shown = if line.starts_with("AUTH XOAUTH2 ") {
            "AUTH XOAUTH2 <token>"
        } else {
            line
        };
        self.log(format!("C: {shown}"));
        if self
            .stream
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .is_err()
        {
            self.log("C: <write failed>".into());
            self.closed = true;
        }
    }

    pub async fn command(&mut self, line: &str) {
        self.send(line).await;
        self.reply().await;
    }
}
