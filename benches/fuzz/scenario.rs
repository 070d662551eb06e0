//! Scenario target: mutated scenario files (every shipped and test one) and generated TOML
//! through the loader (`scenario::parse`, then `scenario::lower`), every error located.

use std::path::{Path, PathBuf};

use maildrill::scenario::{LoadError, lower, parse};

use super::harness::{Check, Gen};
use super::mutate::{self, HUGE_NUMBERS, NASTY, Rng};

/// Generates scenario texts from the seed files and their vocabulary.
pub struct ScenarioGen {
    seeds: Vec<String>,
    tables: Vec<String>,
    keys: Vec<String>,
}

/// Every `*.toml` under `dir`, recursively, in name order.
fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            toml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
}

impl ScenarioGen {
    /// Seeds from `scenarios/` and `tests/` (drills, broken files, chaos cases).
    pub fn new() -> ScenarioGen {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut paths = Vec::new();
        toml_files(&root.join("scenarios"), &mut paths);
        toml_files(&root.join("tests"), &mut paths);
        let seeds: Vec<String> = paths
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect();
        let mut tables = Vec::new();
        let mut keys = Vec::new();
        for line in seeds.iter().flat_map(|s| s.lines()) {
            let line = line.trim();
            if line.starts_with('[') {
                tables.push(line.to_string());
            } else if let Some((key, _)) = line.split_once('=') {
                keys.push(key.trim().to_string());
            }
        }
        for list in [&mut tables, &mut keys] {
            list.sort();
            list.dedup();
        }
        ScenarioGen {
            seeds,
            tables,
            keys,
        }
    }

    /// How many seed files there are.
    pub fn seed_count(&self) -> usize {
        self.seeds.len()
    }

    fn seed(&self, r: &mut Rng) -> &str {
        &self.seeds[r.below(self.seeds.len())]
    }

    /// A seed with whole lines duplicated, dropped, swapped, borrowed or given new values.
    fn lines(&self, r: &mut Rng) -> String {
        let mut lines: Vec<String> = self.seed(r).lines().map(str::to_string).collect();
        for _ in 0..r.range(1, 6) {
            let n = lines.len();
            let i = r.below(n.max(1));
            match r.below(6) {
                0 if n > 0 => lines.insert(i, lines[i].clone()),
                1 if n > 0 => {
                    lines.remove(i);
                }
                2 if n > 1 => lines.swap(i, r.below(n)),
                3 => {
                    let other: Vec<&str> = self.seed(r).lines().collect();
                    let line = other.get(r.below(other.len())).copied().unwrap_or("");
                    lines.insert(i.min(n), line.to_string());
                }
                4 if n > 0 => {
                    if let Some((key, _)) = lines[i].split_once('=') {
                        lines[i] = format!("{key}= {}", value(r, 0));
                    }
                }
                _ => lines.insert(i.min(n), self.entry(r)),
            }
        }
        lines.join(if r.one_in(10) { "\r\n" } else { "\n" })
    }

    fn entry(&self, r: &mut Rng) -> String {
        if r.one_in(3) {
            return self.tables[r.below(self.tables.len())].clone();
        }
        format!("{} = {}", self.keys[r.below(self.keys.len())], value(r, 0))
    }

    /// A file from the vocabulary alone: tables in any order, keys with any values.
    fn generated(&self, r: &mut Rng) -> String {
        let mut out = String::new();
        for _ in 0..r.range(1, 40) {
            out.push_str(&self.entry(r));
            out.push('\n');
        }
        out
    }
}

const DURATIONS: &[&str] = &[
    "+45d",
    "-1h",
    "10s",
    "0s",
    "+0s",
    "+9999999999999999d",
    "-9999999999999999d",
    "1e3s",
    "+1d2h",
    "18446744073709551615s",
    "+106751991167300d",
    "",
    "never",
];

const INSTANTS: &[&str] = &[
    "2025-01-01T00:00:00Z",
    "+262143-12-31T23:59:59Z",
    "-262143-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "2025-02-30T00:00:00Z",
    "2025-01-01T00:00:00+25:00",
    "start+1d",
    "end",
];

/// A TOML value: the durations, instants and numbers the loader reads, and wrong types.
fn value(r: &mut Rng, depth: usize) -> String {
    match r.below(if depth > 2 { 7 } else { 9 }) {
        0 => format!("\"{}\"", r.pick(DURATIONS)),
        1 => format!("\"{}\"", r.pick(INSTANTS)),
        2 => r.pick(HUGE_NUMBERS).to_string(),
        3 => r
            .pick(&[
                "true",
                "false",
                "1979-05-27T07:32:00Z",
                "07:32:00",
                "nan",
                "-inf",
            ])
            .to_string(),
        4 => format!("\"{}\"", mutate::escape(r.pick(NASTY).as_bytes())),
        5 => format!("\"{}\"", "x".repeat(r.size(20_000))),
        6 => r
            .pick(&[
                "\"\"\"\nmulti\nline\"\"\"",
                "'literal'",
                "\"unterminated",
                "[",
                "{",
                "=",
                "",
            ])
            .to_string(),
        7 => {
            let items: Vec<String> = (0..r.below(5)).map(|_| value(r, depth + 1)).collect();
            format!("[{}]", items.join(", "))
        }
        _ => {
            let items: Vec<String> = (0..r.below(4))
                .map(|_| {
                    format!(
                        "{} = {}",
                        r.pick(&["kind", "target", "at", "every", "value", "x"]),
                        value(r, depth + 1)
                    )
                })
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
    }
}

impl Gen for ScenarioGen {
    type Input = String;

    fn input(&self, r: &mut Rng) -> String {
        match r.below(10) {
            0..=4 => {
                let seed = self.seed(r).as_bytes().to_vec();
                let other = self.seed(r).as_bytes();
                let dictionary: [&[u8]; 8] = [
                    other,
                    b"[[timeline]]\n",
                    b"\"",
                    b"=",
                    b"[",
                    b"]",
                    b"\n",
                    b"'''",
                ];
                String::from_utf8_lossy(&mutate::mutate(r, &seed, &dictionary, 300_000))
                    .into_owned()
            }
            5..=7 => self.lines(r),
            8 => self.generated(r),
            _ => String::from_utf8_lossy(&mutate::random_bytes(r, 5000)).into_owned(),
        }
    }

    fn show(&self, input: &String) -> String {
        mutate::escape(input.as_bytes())
    }
}

/// Loads texts as `maildrill run` does: parse, then lower.
pub struct ScenarioCheck;

impl Check<String> for ScenarioCheck {
    fn check(&mut self, input: &String) -> Result<u16, String> {
        let path = Path::new("fuzz.toml");
        let file = match parse(path, input) {
            Ok(file) => file,
            Err(error) => return located(input, &error).map(|()| 1),
        };
        match lower(path, &file, None) {
            Ok(_) => Ok(3),
            Err(error) => located(input, &error).map(|()| 2),
        }
    }
}

/// An error names a line and column inside the text, or a key.
fn located(text: &str, error: &LoadError) -> Result<(), String> {
    let shown = error.to_string();
    match error {
        LoadError::Invalid { line, column, .. } => {
            let lines = text.split('\n').count();
            if *line == 0 || *column == 0 || *line > lines {
                return Err(format!("error outside the text ({lines} lines): {shown}"));
            }
            if !shown.contains(&format!(":{line}:{column}: ")) {
                return Err(format!("error does not show its place: {shown}"));
            }
            Ok(())
        }
        LoadError::Semantic { key, .. } if !key.is_empty() => Ok(()),
        _ => Err(format!("error names no place: {shown}")),
    }
}
