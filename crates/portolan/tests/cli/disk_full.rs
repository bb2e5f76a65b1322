//! A full disk: the server keeps serving reads, refuses writes with 503 saying why, loses nothing
//! it accepted, and takes writes again by itself once there is room.

use std::io::Write;
use std::process::Command;

use serde_json::{Value, json};

use crate::Server;

/// Fills the file system `dir` is on until a write fails for lack of space.
fn fill(path: &std::path::Path) {
    let mut file = std::fs::File::create(path).expect("the filler file");
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = file.sync_all();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_writes_with_503_and_the_server_recovers_when_space_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The catalog and an admin token are made on the real disk first.
    let server = Server::start(&["--data", "data"], dir.path());
    let token = crate::token_of(&server);
    let http = crate::http_plain();
    let blueprint = json!({"identifier": "note", "schema": {"properties": {"text": {"type": "string"}}}});
    let created = http
        .post(format!("{}/api/v1/blueprints", server.base))
        .bearer_auth(&token)
        .json(&blueprint)
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), 201);
    assert!(server.terminate().success());

    // Then the server runs on a copy of them in a small file system of its own: a tmpfs mounted
    // in a mount namespace (no privileges needed beyond an unprivileged user namespace). After
    // it stops, `audit verify` checks what it left there.
    let mut command = Command::new("unshare");
    command
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(
            r#"mkdir small && mount -t tmpfs -o size=24m tmpfs small && cp -a data/. small/ || exit 1
            "$0" serve --listen 127.0.0.1:0 --data small & server=$!
            trap 'kill -TERM $server' TERM
            wait $server; wait $server
            exec "$0" audit verify --data small > verified.txt 2>&1"#,
        )
        .arg(env!("CARGO_BIN_EXE_portolan"))
        .current_dir(dir.path());
    let (server, _) = Server::spawn(command);
    // The server's view of its data directory, from outside its mount namespace.
    let small = std::path::PathBuf::from(format!("/proc/{}/root", server.pid()))
        .join(dir.path().strip_prefix("/").expect("absolute"))
        .join("small");
    let note = |n: usize| json!({"identifier": format!("note-{n}"), "properties": {"text": "x".repeat(1000)}});
    let post = |body: Value| {
        http.post(format!("{}/api/v1/blueprints/note/entities", server.base)).bearer_auth(&token).json(&body).send()
    };
    for n in 0..20 {
        assert_eq!(post(note(n)).await.expect("request").status(), 201);
    }

    fill(&small.join("filler"));
    let mut refused = None;
    for n in 20..200 {
        let response = post(note(n)).await.expect("request");
        if response.status() != 201 {
            refused = Some((n, response.status().as_u16(), response.json::<Value>().await.unwrap_or_default()));
            break;
        }
    }
    let (first_refused, status, body) = refused.expect("a write fails once the disk is full");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "unavailable", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("disk is full"), "{message}");

    // Reads go on, and every write that was accepted is there.
    let listed = http
        .get(format!("{}/api/v1/blueprints/note/entities?limit=1000", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().await.expect("json");
    let identifiers: Vec<&str> =
        listed["entities"].as_array().expect("entities").iter().filter_map(|e| e["identifier"].as_str()).collect();
    assert_eq!(identifiers.len(), first_refused, "{identifiers:?}");

    // Room again: the same server takes the refused write.
    std::fs::remove_file(small.join("filler")).expect("free the space");
    let retried = post(note(first_refused)).await.expect("request");
    let status = retried.status();
    let text = retried.text().await.unwrap_or_default();
    assert_eq!(status, 201, "{text}\n{}", server.output());
    let output = server.output();
    assert!(!output.contains("panicked"), "{output}");
    // The audit chain holds every accepted write and nothing of the refused ones.
    let verified = server.terminate().success();
    let printed = std::fs::read_to_string(dir.path().join("verified.txt")).unwrap_or_default();
    assert!(verified, "audit verify: {printed}");
}
