//! The bundled client is one subject among many: nothing under `src/client/` may reach into the
//! harness (the tenant, the mocks, the runner, the scenario model, the checks, the wiring, the
//! subject seam or chaos). It knows its clock, its seed and its transports, as any client would.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

const HARNESS: [&str; 9] = [
    "tenant", "mock", "runner", "scenario", "check", "wiring", "subject", "chaos", "journal",
];

#[test]
fn the_client_imports_nothing_of_the_harness() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/client");
    let mut offences = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for module in HARNESS {
                for prefix in ["crate::", "maildrill::"] {
                    let needle = format!("{prefix}{module}");
                    let found = code.match_indices(&needle).any(|(i, _)| {
                        // `crate::check` must not match `crate::checked_thing`.
                        !code[i + needle.len()..]
                            .starts_with(|c: char| c.is_alphanumeric() || c == '_')
                    });
                    if found {
                        offences.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(files >= 10, "only {files} files read in {dir}");
    assert!(
        offences.is_empty(),
        "the client imports the harness:\n{}",
        offences.join("\n")
    );
}

/// The harness's vocabulary for the bundled client (its profiles and mutants) lives in
/// `maildrill::subject::profile`: a code path of the client that users may copy carries no
/// "if mutant" branch, only configuration.
#[test]
fn the_client_knows_no_profile_or_mutant() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/client");
    let mut offences = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let lower = line.to_lowercase();
            if ["mutant", "mutation", "profile", "naive"]
                .iter()
                .any(|word| lower.contains(word))
            {
                offences.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "the client names the harness's profiles:\n{}",
        offences.join("\n")
    );
}
