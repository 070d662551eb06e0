//! Every file in `scenarios/` loads and lowers without error.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

#[test]
fn every_shipped_scenario_file_loads() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");
    let mut loaded = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let file = maildrill::scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            file.tenant_spec(&path).unwrap_or_else(|e| panic!("{e}"));
            loaded += 1;
        }
    }
    assert!(loaded >= 1);
}
