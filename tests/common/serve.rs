//! `maildrill serve` as a child process, as clients in other languages meet it: started with
//! its flags, its environment file read, and stopped (its directory removed) when dropped,
//! whether the test passed or not: an orphaned serve would hold the test's output open.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running `maildrill serve`.
pub struct ServeProcess {
    child: Child,
    /// Its directory (environment file, CA, certificate files).
    pub dir: PathBuf,
    /// The environment file's keys and values.
    pub env: BTreeMap<String, String>,
}

impl ServeProcess {
    /// Starts `maildrill serve ARGS --env-file DIR/maildrill.env` and waits until it listens.
    pub fn start(name: &str, args: &[&str]) -> ServeProcess {
        let dir = std::env::temp_dir().join(format!("maildrill-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let env_file = dir.join("maildrill.env");
        let child = Command::new(env!("CARGO_BIN_EXE_maildrill"))
            .arg("serve")
            .args(args)
            .arg("--env-file")
            .arg(&env_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("maildrill serve starts");
        let mut serve = ServeProcess {
            child,
            dir,
            env: BTreeMap::new(),
        };
        // serve prints its addresses once it listens; the env file is written before that.
        let stdout = serve.child.stdout.take().expect("piped stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        assert!(first.starts_with("maildrill serve:"), "{first}");
        // Keep reading so serve never writes into a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let text = std::fs::read_to_string(&env_file).expect("the environment file");
        serve.env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        serve
    }

    /// The environment file's path.
    pub fn env_file(&self) -> PathBuf {
        self.dir.join("maildrill.env")
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
