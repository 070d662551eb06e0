//! Every shipped scenario replays to its expected verdicts, twice to the same bytes, and its
//! report (without `wall_ms`) and the tally of its event stream are a snapshot.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first broken expectation"
)]

fn report_without_wall_time(path: &std::path::Path) -> serde_json::Value {
    let report = maildrill::runner::run_file(path, None).unwrap_or_else(|e| panic!("{e}"));
    let mut value = serde_json::to_value(&report).unwrap();
    value.as_object_mut().unwrap().remove("wall_ms");
    value["events"] = serde_json::to_value(&report.events).unwrap();
    let file = std::path::Path::new(value["file"].as_str().unwrap())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    value["file"] = serde_json::Value::String(format!("scenarios/{file}"));
    value
}

#[test]
fn shipped_scenarios_pass_and_replay_to_the_same_bytes() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../fixtures/snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        insta::glob!("../scenarios", "*.toml", |path| {
            let first = report_without_wall_time(path);
            let second = report_without_wall_time(path);
            assert_eq!(
                first,
                second,
                "{} with seed {} replays differently",
                path.display(),
                first["seed"]
            );
            assert_eq!(
                first["passed"],
                true,
                "{}: {:#}",
                path.display(),
                first["checks"]
            );
            insta::assert_json_snapshot!(first);
        });
    });
}
