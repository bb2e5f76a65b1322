//! Every option of the commands people type has a description of its own in `--help`.

use std::process::Command;

/// The options `--help` lists, each with its description (empty when it has none).
fn options(command: &[&str]) -> Vec<(String, String)> {
    let output = Command::new(env!("CARGO_BIN_EXE_portolan")).args(command).arg("--help").output().expect("runs");
    assert!(output.status.success(), "{command:?} --help failed");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines: Vec<&str> = text.lines().skip_while(|l| *l != "Options:").skip(1).collect();
    let is_option = |line: &str| {
        let trimmed = line.trim_start();
        line.starts_with("  ") && (trimmed.starts_with("--") || (trimmed.starts_with('-') && trimmed.len() > 1))
    };
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !is_option(line) {
            continue;
        }
        let trimmed = line.trim_start();
        // `--name <NAME>  Description` on one line, or the description indented on the next.
        let (flag, same_line) = match trimmed.split_once("  ") {
            Some((flag, rest)) => (flag.trim().to_string(), rest.trim().to_string()),
            None => (trimmed.to_string(), String::new()),
        };
        let next_line = lines
            .get(i + 1)
            .filter(|next| !is_option(next) && next.len() - next.trim_start().len() > line.len() - trimmed.len())
            .map(|next| next.trim().to_string())
            .unwrap_or_default();
        let description = if same_line.is_empty() { next_line } else { same_line };
        // What clap appends (`[env: ...]`, `[default: ...]`) is not a description.
        let description = match description.starts_with('[') {
            true => String::new(),
            false => description.split(" [").next().unwrap_or_default().trim().to_string(),
        };
        found.push((flag, description));
    }
    found
}

#[test]
fn every_option_of_serve_admin_and_audit_has_its_own_help() {
    let commands: [&[&str]; 10] = [
        &["serve"],
        &["backup"],
        &["restore"],
        &["admin"],
        &["admin", "create-user"],
        &["admin", "create-token"],
        &["audit"],
        &["audit", "verify"],
        &["audit", "export"],
        &["audit", "checkpoint"],
    ];
    for command in commands {
        let options = options(command);
        assert!(options.len() > 5, "{command:?}: {options:?}");
        for (flag, description) in &options {
            assert!(!description.is_empty(), "{command:?} {flag} has no help");
            let shared: Vec<&String> =
                options.iter().filter(|(f, d)| d == description && f != flag).map(|(f, _)| f).collect();
            assert!(shared.is_empty(), "{command:?} {flag} has the same help as {shared:?}: {description}");
        }
    }
    let serve = options(&["serve"]);
    let help_of = |name: &str| serve.iter().find(|(f, _)| f.starts_with(name)).map(|(_, d)| d.clone());
    assert!(help_of("--demo ").or(help_of("--demo")).is_some_and(|d| d.contains("demo catalog")));
    assert!(help_of("--admin-password <").is_some_and(|d| !d.contains("demo")), "{:?}", help_of("--admin-password"));
}

#[test]
fn settings_go_before_or_after_the_subcommand() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nowhere").to_string_lossy().into_owned();
    for args in [["audit", "--data", &missing, "verify"], ["audit", "verify", "--data", &missing]] {
        let output = Command::new(env!("CARGO_BIN_EXE_portolan")).args(args).output().expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains(&format!("there is no data directory {missing}")), "{args:?} read --data: {stderr}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_portolan"))
        .args(["admin", "create-token", "--user", "u", "--name", "n", "--data", &missing])
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&output.stderr).contains(&format!("there is no data directory {missing}")));
}
