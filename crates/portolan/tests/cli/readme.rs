//! README's tour, run as written against `portolan serve --demo` on a fresh data directory: the
//! `sh` blocks that follow a `<!-- tour -->` mark, in order, as one bash script with `set -e -o
//! pipefail`. Only the server's address and `cargo run ... --` (this build's binary) are replaced.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Server;

const README: &str = include_str!("../../../../README.md");
const MARK: &str = "<!-- tour -->";
/// Where README's commands expect the server.
const README_ADDRESS: &str = "http://127.0.0.1:7700";

/// The shell blocks that follow a tour mark.
fn tour_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.trim() != MARK {
            continue;
        }
        let fence = lines.next().unwrap_or_default();
        assert_eq!(fence.trim(), "```sh", "a tour mark must stand right before a ```sh block");
        let block: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
        blocks.push(block.join("\n"));
    }
    blocks
}

/// Replaces each `cargo run ... -- ` with the binary under test.
fn with_binary(script: &str, binary: &str) -> String {
    let mut out = String::new();
    let mut rest = script;
    while let Some(start) = rest.find("cargo run ") {
        let args = rest[start..].find(" -- ").unwrap_or_else(|| panic!("a `cargo run` without ` -- `: {rest}"));
        out.push_str(&rest[..start]);
        out.push_str(&format!("'{binary}' "));
        rest = &rest[start + args + " -- ".len()..];
    }
    out.push_str(rest);
    assert!(!out.contains("cargo "), "the tour runs no other cargo command: {out}");
    out
}

fn installed(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Responses with an error status, by `METHOD route status`, from the server's metrics.
async fn error_responses(base: &str) -> Vec<(String, u64)> {
    let metrics = crate::http_plain().get(format!("{base}/metrics")).send().await.expect("metrics");
    let text = metrics.text().await.expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with("portolan_http_requests_total{"))
        .filter_map(|l| {
            let (labels, count) = l.rsplit_once(' ')?;
            let status = labels.split("status=\"").nth(1)?.get(..3)?;
            let count: u64 = count.trim().parse().ok()?;
            (status >= "400").then(|| (labels.to_string(), count))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tour_command_of_the_readme_runs_as_written_against_a_fresh_demo_server() {
    for tool in ["bash", "curl", "jq"] {
        assert!(installed(tool), "README's tour needs {tool}: install it (`apt-get install {tool}`; .ci/run does)");
    }
    let blocks = tour_blocks(README);
    assert!(blocks.len() >= 3, "the API tour, the actions and the audit log are marked: {} blocks", blocks.len());

    let dir = tempfile::tempdir().expect("temp dir");
    let (server, _) = Server::start_bare(&["--demo"], dir.path());
    let script = with_binary(&blocks.join("\n"), env!("CARGO_BIN_EXE_portolan")).replace(README_ADDRESS, &server.base);
    let refusals = script.lines().filter(|l| l.trim_start().starts_with("refused ")).count() as u64;
    std::fs::write(dir.path().join("tour.sh"), format!("set -e -o pipefail -x\n{script}\n")).expect("script");

    let stdout = std::fs::File::create(dir.path().join("tour.out")).expect("stdout file");
    let stderr = std::fs::File::create(dir.path().join("tour.err")).expect("stderr file");
    let mut bash = Command::new("bash")
        .arg("tour.sh")
        .current_dir(dir.path())
        .env_remove("PORTOLAN_DATA")
        .env_remove("PORTOLAN_DATABASE_URL")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("bash runs");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = bash.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = bash.kill();
            break bash.wait().expect("wait");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let tail =
        |text: String| text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(
        status.success(),
        "README's tour stopped ({status}); the commands it ran, last one last:\n{}\n\nits output, last lines:\n{}",
        tail(read("tour.err")),
        tail(read("tour.out"))
    );

    // Every answer was a success, but for the refusals the tour means to show.
    let errors = error_responses(&server.base).await;
    let count: u64 = errors.iter().map(|(_, n)| n).sum();
    assert_eq!(count, refusals, "error responses beyond the tour's {refusals} `refused` calls: {errors:#?}");
    assert!(read("tour.out").contains("\"created\""), "the scaffolded service was created by its run");
    server.terminate();
}
