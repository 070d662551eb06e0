//! The Python the client tests run (`MAILDRILL_PYTHON`, default `python3`), when it has the
//! packages a test needs; CI installs them (`tests/python/requirements.txt`) and sets
//! `MAILDRILL_REQUIRE_CLIENTS`, so a missing package fails there and is explained elsewhere.

use std::process::{Command, Stdio};

/// The interpreter, if `import MODULES` works in it.
pub fn python_with(modules: &[&str]) -> Option<String> {
    let python = std::env::var("MAILDRILL_PYTHON").unwrap_or_else(|_| "python3".into());
    let found = Command::new(&python)
        .args(["-c", &format!("import {}", modules.join(", "))])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        let names = modules.join(", ");
        assert!(
            std::env::var_os("MAILDRILL_REQUIRE_CLIENTS").is_none(),
            "{python} lacks one of {names}, required here (MAILDRILL_REQUIRE_CLIENTS is set)"
        );
        eprintln!(
            "skipping: {python} lacks one of {names} (pip install -r \
             tests/python/requirements.txt, then set MAILDRILL_PYTHON)"
        );
    }
    found.then_some(python)
}
