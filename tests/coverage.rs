//! `maildrill coverage` as CI uses it: the JSON map of one scenario file, `--require` of a cell
//! it fills (exit 0), of one it leaves empty (exit 1), and of a cell no run could fill or a
//! file that does not load (exit 2).

use std::process::Command;

const FILE: &str = "scenarios/smtp-drop-after-data.toml";

fn coverage(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_maildrill"))
        .arg("coverage")
        .args(args)
        .env("CI", "1")
        .output()
        .expect("maildrill runs");
    (
        output.status.code().expect("an exit code"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn the_map_of_a_drop_after_data_scenario_has_that_cell_and_its_json_names_the_file() {
    let (code, stdout) = coverage(&[FILE, "--json", "-"]);
    assert_eq!(code, 0, "{stdout}");
    // Standard output is the document alone (the lines for people go to standard error), so
    // `| jq` works.
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("the map is JSON");
    let cell = json["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .find(|c| c["fault"] == "drop_after_data" && c["stage"] == "smtp-after-dot")
        .expect("drop_after_data reached the final dot");
    assert_eq!(cell["scenarios"][0]["file"], FILE);
    let empty = json["empty"].as_array().expect("empty cells");
    assert!(empty.iter().any(|c| c == "timeout@smtp-connect"));
    assert!(!empty.iter().any(|c| c == "drop_after_data@smtp-after-dot"));
}

#[test]
fn require_exits_1_on_an_empty_cell_and_2_on_one_that_cannot_be_filled() {
    assert_eq!(
        coverage(&[FILE, "--require", "drop_after_data@smtp-after-dot"]).0,
        0
    );
    let (code, stdout) = coverage(&[FILE, "--require", "timeout@smtp-connect"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("required cell timeout@smtp-connect is empty"),
        "{stdout}"
    );
    assert_eq!(
        coverage(&[FILE, "--require", "tls_failure@graph-delta"]).0,
        2
    );
    assert_eq!(coverage(&["tests/no-such-file.toml"]).0, 2);
}
