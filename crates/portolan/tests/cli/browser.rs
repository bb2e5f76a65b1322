//! The web portal in a real browser: Debian's chromium, driven through chromedriver's WebDriver
//! protocol, against `portolan serve --demo` (with its runner). Runs when
//! `PORTOLAN_TEST_CHROMEDRIVER` names chromedriver (CI installs it and sets it; then a browser that
//! will not start fails the test). Screenshots of the main pages go to
//! `target/browser-screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::Server;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    process: Child,
    base: String,
    client: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
    }
}

/// One browser window, signed in as nobody until it signs in.
struct Browser<'a> {
    driver: &'a Driver,
    session: String,
}

impl Driver {
    async fn start(path: &str) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("port").port();
        let process = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver { process, base: format!("http://127.0.0.1:{port}"), client: crate::http_plain() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = driver.client.get(format!("{}/status", driver.base)).send().await
                && response.status().is_success()
            {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response: Value = request.send().await.expect("webdriver answers").json().await.expect("json");
        assert!(response["value"]["error"].is_null(), "webdriver {path}: {response}");
        response["value"].clone()
    }

    async fn open(&self) -> Browser<'_> {
        let binary = std::env::var("PORTOLAN_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": binary,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]
        }}}});
        let created = self.call(reqwest::Method::POST, "/session", Some(capabilities)).await;
        Browser { driver: self, session: created["sessionId"].as_str().expect("a session").to_string() }
    }
}

impl Browser<'_> {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.driver.call(method, &format!("/session/{}{path}", self.session), body).await
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None).await.as_str().unwrap_or_default().to_string()
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or_default().to_string()
    }

    async fn find(&self, css: &str) -> String {
        let found =
            self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        match found[ELEMENT].as_str() {
            Some(element) => element.to_string(),
            None => panic!("no element {css} ({found}) on {}: {}", self.url().await, self.source().await),
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{element}/clear"), Some(json!({}))).await;
        self.call(reqwest::Method::POST, &format!("/element/{element}/value"), Some(json!({"text": text}))).await;
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{element}/click"), Some(json!({}))).await;
    }

    /// Presses Tab; the text of the element that has the focus then.
    async fn tab(&self) -> String {
        let key = |kind: &str| json!({"type": kind, "value": "\u{E004}"});
        let press = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [key("keyDown"), key("keyUp")]}]});
        self.call(reqwest::Method::POST, "/actions", Some(press)).await;
        let active = self.call(reqwest::Method::GET, "/element/active", None).await;
        let element = active[ELEMENT].as_str().expect("an element has the focus");
        self.call(reqwest::Method::GET, &format!("/element/{element}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .into()
    }

    /// Waits until the page (reloaded by its own script, or by us) shows `text`.
    async fn wait_for(&self, text: &str, within: Duration, reload: bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let source = self.source().await;
            if source.contains(text) {
                return source;
            }
            assert!(Instant::now() < deadline, "'{text}' never appeared: {source}");
            tokio::time::sleep(Duration::from_millis(250)).await;
            if reload {
                let url = self.url().await;
                self.go(&url).await;
            }
        }
    }

    async fn screenshot(&self, name: &str) {
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap_or_default()).expect("png");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), bytes).expect("screenshot written");
    }

    async fn sign_in(&self, base: &str, username: &str, password: &str) {
        self.go(&format!("{base}/login")).await;
        self.type_into("#username", username).await;
        self.type_into("#password", password).await;
        self.click("form button[type=submit]").await;
        self.wait_for(&format!("Hello, {username}"), Duration::from_secs(10), false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_in_a_real_browser() {
    let Ok(chromedriver) = std::env::var("PORTOLAN_TEST_CHROMEDRIVER") else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, _) = Server::start_bare(&["--demo"], dir.path());
    let base = server.base.clone();
    let driver = Driver::start(&chromedriver).await;

    // Alice signs in, browses the catalog, filters it and opens a service.
    let alice = driver.open().await;
    alice.sign_in(&base, "alice@portolan.dev", "portolan-demo").await;
    alice.screenshot("home").await;
    // From the keyboard, the first Tab offers a way past the header; the next one walks into it.
    assert_eq!(alice.tab().await, "Skip to the page");
    alice.screenshot("home-keyboard").await;
    assert_eq!(alice.tab().await, "Portolan");
    alice.go(&format!("{base}/catalog")).await;
    assert!(alice.source().await.contains("href=\"/catalog/service\""));
    alice.screenshot("catalog").await;
    alice.go(&format!("{base}/catalog/service")).await;
    alice.type_into("#q", "cart").await;
    alice.click("div.search button").await;
    let filtered = alice.wait_for("Cart Service", Duration::from_secs(5), false).await;
    assert!(!filtered.contains("Products Service"), "filtered by title");
    alice.screenshot("catalog-service").await;
    alice.go(&format!("{base}/catalog/service")).await;
    // The counts arrive after the table, fetched by the page's script.
    alice.wait_for("class=\"facet\"", Duration::from_secs(5), false).await;
    alice.click("a.facet").await;
    let faceted = alice.wait_for("class=\"facet on\"", Duration::from_secs(5), false).await;
    assert!(faceted.contains("aria-current=\"true\""), "the chosen facet is marked");
    alice.go(&format!("{base}/catalog/service?q=cart")).await;
    alice.click("a[href='/catalog/service/cart-service']").await;
    let entity = alice.wait_for("Relations", Duration::from_secs(5), false).await;
    let graph = alice.find("svg.graph").await;
    let links = alice
        .call(
            reqwest::Method::POST,
            &format!("/element/{graph}/elements"),
            Some(json!({"using": "css selector", "value": "a"})),
        )
        .await;
    assert!(links.as_array().is_some_and(|l| l.len() >= 3), "the neighbourhood links its boxes: {links}");
    assert!(entity.contains("href=\"/catalog/system/cart-system\""), "its system in the picture: {entity}");
    alice.screenshot("entity").await;
    alice.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": 390, "height": 844}))).await;
    alice.screenshot("entity-phone").await;
    alice.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": 1280, "height": 900}))).await;
    alice.go(&format!("{base}/actions")).await;
    assert!(alice.source().await.contains("<h2>Development environments</h2>"), "the hub groups by category");
    alice.screenshot("self-service").await;
    alice.go(&format!("{base}/search?q=payment")).await;
    alice.wait_for("/catalog/", Duration::from_secs(5), false).await;
    alice.screenshot("search").await;

    // She spins up a developer environment through its form and watches the live log end.
    alice.go(&format!("{base}/actions/create_dev_environment")).await;
    alice.type_into("input[name='in.name']", "alice-dev").await;
    alice.click("select[name='in.service'] option[value='cart-service']").await;
    alice.screenshot("action-form").await;
    alice.click("button[value='run']").await;
    let run_page = alice.wait_for("SUCCESS", Duration::from_secs(30), false).await;
    assert!(run_page.contains("alice-dev is up until"), "the run's summary: {run_page}");
    alice.screenshot("run").await;
    alice.go(&format!("{base}/catalog/environment/alice-dev")).await;
    let environment = alice.wait_for("alice-dev", Duration::from_secs(5), true).await;
    assert!(
        environment.contains("class=\"countdown\"") && environment.contains("ends in 4 days 23 hours"),
        "the environment's TTL counts down: {environment}"
    );
    assert!(environment.contains("by <a href=\"/runs/"), "it links the run that created it: {environment}");
    alice.screenshot("environment").await;
    alice.go(&format!("{base}/admin")).await;
    alice.screenshot("admin").await;
    alice.go(&format!("{base}/admin/actions/create_dev_environment?format=yaml")).await;
    assert!(alice.source().await.contains("identifier: create_dev_environment"), "an action as YAML");
    alice.screenshot("admin-action").await;

    // A deploy needs team-platform's approval: Carol gives it in her own browser.
    alice.go(&format!("{base}/actions/deploy_service?entity=cart-service")).await;
    alice.type_into("input[name='in.version']", "1.2.3").await;
    alice.click("button[value='run']").await;
    alice.wait_for("WAITING_FOR_APPROVAL", Duration::from_secs(10), false).await;
    let run_url = alice.url().await;
    let carol = driver.open().await;
    carol.sign_in(&base, "carol@portolan.dev", "portolan-demo").await;
    carol.go(&format!("{base}/approvals")).await;
    let inbox = carol.source().await;
    assert!(inbox.contains("Asked by alice@portolan.dev"), "{inbox}");
    carol.screenshot("approvals").await;
    carol.go(&run_url).await;
    carol.type_into("#comment", "ship it").await;
    carol.click("button[value='APPROVE']").await;
    carol.wait_for("SUCCESS", Duration::from_secs(30), true).await;
    alice.wait_for("SUCCESS", Duration::from_secs(30), true).await;
    carol.go(&format!("{base}/audit?action=run.approve")).await;
    assert!(carol.source().await.contains("carol@portolan.dev"), "the approval is in the audit log");
    carol.screenshot("audit").await;
    carol.go(&format!("{base}/scorecards")).await;
    carol.screenshot("scorecards").await;

    // Bob, of another team, cannot see the cart team's resource anywhere.
    let bob = driver.open().await;
    bob.sign_in(&base, "bob@portolan.dev", "portolan-demo").await;
    for path in ["/", "/catalog/resource", "/catalog/resource?q=cart", "/search?q=cart", "/facets/resource", "/audit"] {
        bob.go(&format!("{base}{path}")).await;
        assert!(!bob.source().await.contains("cart-resource"), "{path} shows the hidden resource");
    }
    bob.go(&format!("{base}/catalog/resource/cart-resource")).await;
    assert!(bob.source().await.contains("Not found"));
    server.terminate();
}
