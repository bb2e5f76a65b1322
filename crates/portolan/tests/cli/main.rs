//! End-to-end tests of the `portolan` binary as a user runs it.

mod apply;
mod audit;
mod backup;
mod browser;
mod demo;
mod disk_full;
mod help;
mod postgres;
mod readme;
mod runs;
mod sandbox;
mod sqlite_sharing;
mod traces;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running `portolan serve` and the address it printed.
pub struct Server {
    child: Child,
    pub base: String,
    /// What it wrote after its address, stdout and stderr.
    output: Arc<Mutex<String>>,
}

impl Server {
    /// Starts a server whose requests through [`http`] carry the token of an admin, `ci-admin`.
    pub fn start(args: &[&str], dir: &std::path::Path) -> Server {
        // `serve` makes the database; `admin` then works on it beside the running server.
        let (server, _) = Server::start_bare(args, dir);
        let token = admin_token(args, dir);
        TOKENS.lock().unwrap_or_else(|p| p.into_inner()).insert(server.base.clone(), token);
        server
    }

    /// Starts a server as a user would, and returns what it printed before its address.
    pub fn start_bare(args: &[&str], dir: &std::path::Path) -> (Server, Vec<String>) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_portolan"));
        command.args(["serve", "--listen", "127.0.0.1:0"]).args(args).current_dir(dir);
        Server::spawn(command)
    }

    /// Runs `command`, which must end in `portolan serve` (possibly through a wrapper), and waits
    /// for the address it prints.
    pub fn spawn(mut command: Command) -> (Server, Vec<String>) {
        let mut child = command
            .env_remove("PORTOLAN_DATA")
            .env_remove("PORTOLAN_LISTEN")
            .env_remove("PORTOLAN_DATABASE_URL")
            // The tests drive a server harder than one person would; the limit has its own test.
            .env("PORTOLAN_RATE_LIMIT_PER_MINUTE", "0")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("portolan starts");
        let output = Arc::new(Mutex::new(String::new()));
        // Both streams are read to the end, so the server never blocks on (or loses) a log line.
        let drain = |stream: Box<dyn BufRead + Send>, output: Arc<Mutex<String>>| {
            std::thread::spawn(move || {
                for line in stream.lines().map_while(Result::ok) {
                    let mut output = output.lock().unwrap_or_else(|p| p.into_inner());
                    output.push_str(&line);
                    output.push('\n');
                }
            })
        };
        let stderr = drain(Box::new(BufReader::new(child.stderr.take().expect("stderr"))), output.clone());
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut base = None;
        let mut printed = Vec::new();
        let mut line = String::new();
        while stdout.read_line(&mut line).unwrap_or(0) > 0 {
            let text = std::mem::take(&mut line).trim_end().to_string();
            if let Some(at) = text.find("listening on http://") {
                let address = &text[at + "listening on ".len()..];
                // (A JSON log line ends the address with a quote.)
                base =
                    Some(address.split(|c: char| c.is_whitespace() || c == '"').next().unwrap_or_default().to_string());
                break;
            }
            printed.push(text);
        }
        let Some(base) = base else {
            let _ = child.kill();
            let _ = child.wait();
            let _ = stderr.join();
            let output = output.lock().unwrap_or_else(|p| p.into_inner()).clone();
            panic!("the server did not print its address; stderr: {output}");
        };
        drain(Box::new(stdout), output.clone());
        (Server { child, base, output }, printed)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server has logged since it printed its address.
    pub fn output(&self) -> String {
        self.output.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// SIGKILL: the process gets no chance to clean up, as in a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        assert!(sent.success());
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("portolan did not stop within 5 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Runs `portolan admin` against the database `args` name.
fn admin(args: &[&str], dir: &std::path::Path, command: &[&str]) -> std::process::Output {
    // `serve` flags that `admin` reads too; the others (`--demo`, `--listen`) do not matter to it.
    Command::new(env!("CARGO_BIN_EXE_portolan"))
        .arg("admin")
        .args(args)
        .args(command)
        .current_dir(dir)
        .env_remove("PORTOLAN_DATA")
        .env_remove("PORTOLAN_DATABASE_URL")
        .output()
        .expect("portolan admin runs")
}

/// Runs `portolan <args>` in `dir`: whether it succeeded, and what it printed.
pub fn portolan(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_portolan"))
        .args(args)
        .current_dir(dir)
        .env_remove("PORTOLAN_DATA")
        .env_remove("PORTOLAN_DATABASE_URL")
        .env_remove("PORTOLAN_SECRETS_KEY")
        .output()
        .expect("portolan runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// A service account `ci-admin` (created by `portolan admin` if missing) and a new token of it.
fn admin_token(args: &[&str], dir: &std::path::Path) -> String {
    let created = admin(args, dir, &["create-user", "ci-admin", "--role", "admin", "--service"]);
    let stderr = String::from_utf8_lossy(&created.stderr);
    assert!(created.status.success() || stderr.contains("already has an account"), "create-user: {stderr}");
    let token = admin(args, dir, &["create-token", "--user", "ci-admin", "--name", "tests"]);
    assert!(token.status.success(), "create-token: {}", String::from_utf8_lossy(&token.stderr));
    String::from_utf8_lossy(&token.stdout).trim().to_string()
}

/// The admin token of each running server, by base URL.
static TOKENS: std::sync::Mutex<std::collections::BTreeMap<String, String>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The admin token [`Server::start`] made for a server.
pub fn token_of(server: &Server) -> String {
    TOKENS.lock().unwrap_or_else(|p| p.into_inner()).get(&server.base).cloned().expect("a server made by Server::start")
}

/// An HTTP client that signs each request with the admin token of the server it goes to.
pub fn http() -> Client {
    portolan_server::outbound::install_crypto();
    Client(reqwest::Client::new())
}

pub struct Client(reqwest::Client);

/// A plain HTTP client, for talking to something other than a Portolan server.
pub fn http_plain() -> reqwest::Client {
    portolan_server::outbound::install_crypto();
    reqwest::Client::new()
}

impl Client {
    pub fn request(&self, method: reqwest::Method, url: impl AsRef<str>) -> reqwest::RequestBuilder {
        let url = url.as_ref();
        let token = TOKENS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(base, _)| url.starts_with(base.as_str()))
            .map(|(_, token)| token.clone());
        let request = self.0.request(method, url);
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub fn get(&self, url: impl AsRef<str>) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, url)
    }

    pub fn post(&self, url: impl AsRef<str>) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, url)
    }

    pub fn patch(&self, url: impl AsRef<str>) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::PATCH, url)
    }

    pub fn delete(&self, url: impl AsRef<str>) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::DELETE, url)
    }
}

pub async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let response = crate::http().get(url).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn serve_demo_loads_the_catalog_into_the_default_data_dir_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&["--demo"], dir.path());
    let (status, body) = get_json(&format!("{}/api/v1/blueprints/service/entities", server.base)).await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> =
        body["entities"].as_array().expect("list").iter().filter_map(|e| e["title"].as_str()).collect();
    assert_eq!(names, vec!["Cart Service", "Products Service"]);
    let status = server.terminate();
    assert!(status.success(), "graceful exit, got {status}");
    assert!(dir.path().join("portolan-data/portolan.db").exists(), "data kept in ./portolan-data");

    // A second start with --demo adds nothing and keeps what is there.
    let server = Server::start(&["--demo"], dir.path());
    let (_, body) = get_json(&format!("{}/api/v1/blueprints/_user/entities", server.base)).await;
    assert_eq!(body["entities"].as_array().map(Vec::len), Some(6), "four demo users, the first admin and ci-admin");
    server.terminate();
}

async fn login(base: &str, username: &str, password: &str) -> (u16, serde_json::Value, Option<String>) {
    let body = serde_json::json!({"username": username, "password": password});
    let response = crate::http().post(format!("{base}/api/v1/auth/login")).json(&body).send().await.expect("login");
    let status = response.status().as_u16();
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string);
    (status, response.json().await.unwrap_or_default(), cookie)
}

#[tokio::test]
async fn the_first_start_makes_an_admin_with_a_one_time_password_and_demo_users_sign_in() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, printed) = Server::start_bare(&["--demo"], dir.path());
    let password = printed
        .iter()
        .find_map(|l| l.trim().strip_prefix("password: "))
        .unwrap_or_else(|| panic!("no one-time password printed: {printed:?}"))
        .to_string();
    let (status, body, _) = login(&server.base, "admin", &password).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["role"], "admin");
    assert_eq!(login(&server.base, "admin", "guessed-password").await.0, 401);

    // The demo users, with the password README gives, and their teams' view of the catalog.
    let (status, bob, bob_cookie) = login(&server.base, "bob@portolan.dev", "portolan-demo").await;
    assert_eq!(status, 200, "{bob}");
    assert_eq!(bob["user"]["teams"], serde_json::json!(["team-products"]));
    let (_, _, alice_cookie) = login(&server.base, "alice@portolan.dev", "portolan-demo").await;
    let resource = format!("{}/api/v1/blueprints/resource/entities/cart-resource", server.base);
    let as_cookie = |cookie: Option<String>| {
        let url = resource.clone();
        async move {
            let request = reqwest::Client::new().get(url).header("cookie", cookie.unwrap_or_default());
            request.send().await.expect("request").status().as_u16()
        }
    };
    assert_eq!(as_cookie(alice_cookie).await, 200, "team-cart owns the cart resource");
    assert_eq!(as_cookie(bob_cookie).await, 404, "team-products does not see it");
    server.terminate();

    let (server, printed) = Server::start_bare(&["--demo"], dir.path());
    assert!(!printed.iter().any(|l| l.contains("password")), "shown only once: {printed:?}");

    // `portolan admin` adds users and tokens to the same database, even while it serves.
    let created = Command::new(env!("CARGO_BIN_EXE_portolan"))
        .args(["admin", "create-user", "eve@portolan.dev", "--team", "team-cart"])
        .env("PORTOLAN_NEW_PASSWORD", "eve's long password")
        .current_dir(dir.path())
        .output()
        .expect("runs");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    assert_eq!(login(&server.base, "eve@portolan.dev", "eve's long password").await.0, 200);
    let short = Command::new(env!("CARGO_BIN_EXE_portolan"))
        .args(["admin", "create-user", "fay@portolan.dev"])
        .env("PORTOLAN_NEW_PASSWORD", "short")
        .current_dir(dir.path())
        .output()
        .expect("runs");
    assert!(!short.status.success(), "a too-short password is refused");
    let token = Command::new(env!("CARGO_BIN_EXE_portolan"))
        .args(["admin", "create-token", "--user", "eve@portolan.dev", "--name", "laptop"])
        .current_dir(dir.path())
        .output()
        .expect("runs");
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    assert!(token.starts_with("plt_"), "{token}");
    let me = reqwest::Client::new()
        .get(format!("{}/api/v1/auth/me", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("me");
    let me: serde_json::Value = me.json().await.expect("json");
    assert_eq!(me["user"]["identifier"], "eve@portolan.dev");
    server.terminate();
}

#[tokio::test]
async fn config_file_sets_data_directory_and_body_limit_and_unknown_keys_fail() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("portolan.toml"), "data = \"from-file\"\nbody_limit = 2048\n")
        .expect("write config");
    let server = Server::start(&[], dir.path());
    let big = serde_json::json!({"identifier": "big", "description": "x".repeat(3000)});
    let response =
        crate::http().post(format!("{}/api/v1/blueprints", server.base)).json(&big).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 413, "body_limit from the file applies");
    server.terminate();
    assert!(dir.path().join("from-file/portolan.db").exists());

    std::fs::write(dir.path().join("portolan.toml"), "data = \"x\"\nbogus = 1\n").expect("write config");
    let output = Command::new(env!("CARGO_BIN_EXE_portolan"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bogus"), "the unknown key is named: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jq_calculations_run_sandboxed_and_a_runaway_expression_costs_nothing_but_its_value() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&["--demo"], dir.path());
    let client = crate::http();
    let blueprint = format!("{}/api/v1/blueprints/service", server.base);
    let bad = client
        .patch(&blueprint)
        .json(&serde_json::json!({"calculationProperties": {"x": {"calculation": ".a | | .b", "type": "number"}}}))
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status().as_u16(), 422);
    let body: serde_json::Value = bad.json().await.expect("json");
    assert_eq!(body["details"][0]["path"], "/calculationProperties/x/calculation");

    let calculations = serde_json::json!({"calculationProperties": {
        "replicaBudget": {"calculation": ".properties.replicas * 2", "type": "number"},
        "shout": {"calculation": ".identifier | ascii_upcase", "type": "string"},
        "wrongType": {"calculation": ".properties.language", "type": "number"},
        "loops": {"calculation": "def f: f; f", "type": "number"},
        "recurses": {"calculation": "def f: 1 + f; f", "type": "number"},
        "floods": {"calculation": "[repeat(1)] | length", "type": "number"}
    }});
    let added = client.patch(&blueprint).json(&calculations).send().await.expect("request");
    assert_eq!(added.status().as_u16(), 200, "{}", added.text().await.unwrap_or_default());

    let url = format!("{}/api/v1/blueprints/service/entities/cart-service", server.base);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let entity = loop {
        let (_, body) = get_json(&url).await;
        if body["entity"]["properties"]["replicaBudget"] == 12 && body["entity"]["diagnostics"]["floods"].is_string() {
            break body["entity"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "calculations not applied: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(entity["properties"]["shout"], "CART-SERVICE");
    for name in ["wrongType", "loops", "recurses", "floods"] {
        assert!(entity["properties"].get(name).is_none(), "{name} has no value");
        assert!(
            entity["diagnostics"][name].as_str().is_some_and(|d| d.starts_with("calculation failed")),
            "{name}: {entity}"
        );
    }
    assert!(entity["diagnostics"]["wrongType"].as_str().is_some_and(|d| d.contains("not of type number")));
    let (status, _) = get_json(&format!("{}/readyz", server.base)).await;
    assert_eq!(status, 200, "the server keeps serving");

    // A write recomputes at once, through the same sandbox.
    let patched =
        client.patch(&url).json(&serde_json::json!({"properties": {"replicas": 7}})).send().await.expect("request");
    let body: serde_json::Value = patched.json().await.expect("json");
    assert_eq!(body["entity"]["properties"]["replicaBudget"], 14);
    server.terminate();
}
