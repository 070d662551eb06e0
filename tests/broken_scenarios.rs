//! A corpus of broken scenario files: each gets a clear error naming the file, line, column and
//! key (or the key for a value that parses but makes no sense), and none panics.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

#[test]
fn every_broken_scenario_gets_a_clear_error() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../fixtures/snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        insta::glob!("broken", "*.toml", |path| {
            let error = match maildrill::runner::check_file(path) {
                Ok(_) => panic!("{} should not load", path.display()),
                Err(error) => error.to_string(),
            };
            // Paths in messages are relative to the repository, as users see them.
            let root = concat!(env!("CARGO_MANIFEST_DIR"), "/");
            insta::assert_snapshot!(error.replace(root, ""));
        });
    });
}
