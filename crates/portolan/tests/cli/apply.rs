//! `portolan export` and `portolan apply` as a user runs them: the demo catalog exported and
//! applied onto an empty server is the same catalog, and a bad file is named by file and line.

use std::path::Path;
use std::process::Command;

use crate::{Server, token_of};

fn portolan(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portolan"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("portolan runs")
}

/// Every file under `dir` with its text, by relative path.
fn tree(dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let text = std::fs::read_to_string(&path).expect("read");
                files.push((path.strip_prefix(dir).expect("under").display().to_string(), text));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_demo_exported_and_applied_onto_an_empty_server_is_the_same_catalog() {
    let (demo_dir, empty_dir, work) =
        (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let demo = Server::start(&["--demo"], demo_dir.path());
    let empty = Server::start(&[], empty_dir.path());
    let (demo_token, empty_token) = (token_of(&demo), token_of(&empty));

    let exported = portolan(work.path(), &["export", "--server", &demo.base, "--token", &demo_token, "first"]);
    assert!(exported.status.success(), "export: {}", String::from_utf8_lossy(&exported.stderr));
    let plan =
        portolan(work.path(), &["apply", "--server", &empty.base, "--token", &empty_token, "-f", "first", "--dry-run"]);
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.status.success() && plan_text.contains("Plan (dry run, nothing changed)"), "{plan_text}");
    assert!(plan_text.contains("+ create Entity service/cart-service (first/entities/service.yaml)"), "{plan_text}");
    let applied = portolan(work.path(), &["apply", "--server", &empty.base, "--token", &empty_token, "-f", "first"]);
    assert!(
        applied.status.success(),
        "apply: {}{}",
        String::from_utf8_lossy(&applied.stdout),
        String::from_utf8_lossy(&applied.stderr)
    );
    let again = portolan(work.path(), &["export", "--server", &empty.base, "--token", &empty_token, "second"]);
    assert!(again.status.success());
    let (first, second) = (tree(&work.path().join("first")), tree(&work.path().join("second")));
    assert!(first.len() > 10, "the demo exports its blueprints, entities and actions: {}", first.len());
    assert_eq!(first, second, "export -> apply onto an empty server -> export gives the same files");

    // A mistake is named by file, line and pointer, and nothing is applied.
    let bad = "apiVersion: portolan.dev/v1\nkind: Entity\nspec:\n  blueprint: service\n  identifier: new-service\n  properties:\n    language: Go\n    tier: tier-9\n";
    std::fs::write(work.path().join("bad.yaml"), bad).expect("write");
    let refused = portolan(work.path(), &["apply", "--server", &empty.base, "--token", &empty_token, "-f", "bad.yaml"]);
    let out = String::from_utf8_lossy(&refused.stdout);
    assert!(!refused.status.success(), "{out}");
    assert!(out.contains("bad.yaml:8: /spec/properties/tier:"), "{out}");
    assert!(out.contains("nothing was applied"), "{out}");
    let unreadable =
        portolan(work.path(), &["apply", "--server", &empty.base, "--token", &empty_token, "-f", "missing-dir"]);
    assert!(!unreadable.status.success());
}
