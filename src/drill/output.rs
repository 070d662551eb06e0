//! What a drill's subject printed: all of it (bounded) for the leak scan, and the last lines
//! for the incidents that quote it.

use std::collections::VecDeque;

/// Bytes of output kept for the leak scan; past it, only the tail is kept.
const KEEP_BYTES: usize = 4 << 20;
/// Lines an incident quotes.
const TAIL_LINES: usize = 20;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A subject's output so far.
#[derive(Debug, Default)]
pub struct Output {
    text: String,
    tail: VecDeque<String>,
    dropped_bytes: u64,
}

impl Output {
    /// Keeps one line.
    pub fn push(&mut self, stream: Stream, line: &str) {
        let marked = match stream {
            Stream::Stdout => format!("out| {line}"),
            Stream::Stderr => format!("err| {line}"),
        };
        if self.text.len() + marked.len() < KEEP_BYTES {
            self.text.push_str(&marked);
            self.text.push('\n');
        } else {
            self.dropped_bytes += marked.len() as u64 + 1;
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(marked);
    }

    /// Everything kept, plus the tail when the middle was dropped (so the scan sees the end).
    pub fn text(&self) -> String {
        if self.dropped_bytes == 0 {
            return self.text.clone();
        }
        let mut text = self.text.clone();
        text.push_str(&format!("[{} bytes not kept]\n", self.dropped_bytes));
        for line in &self.tail {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// The last lines, for an incident (the report redacts them).
    pub fn tail(&self) -> String {
        if self.tail.is_empty() {
            return "(it printed nothing)".into();
        }
        let lines: Vec<&str> = self.tail.iter().map(String::as_str).collect();
        format!("its last lines:\n{}", lines.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_lines_of_both_streams() {
        let mut output = Output::default();
        for i in 0..30 {
            output.push(Stream::Stdout, &format!("line {i}"));
        }
        output.push(Stream::Stderr, "Traceback: boom");
        let tail = output.tail();
        assert!(tail.contains("err| Traceback: boom"), "{tail}");
        assert!(!tail.contains("line 10\n"), "{tail}");
        assert!(output.text().contains("out| line 0\n"));
    }
}
