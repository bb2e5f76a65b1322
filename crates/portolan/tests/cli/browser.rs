//! The web portal in a real browser: Debian's chromium, driven through chromedriver's WebDriver
//! protocol, against `portolan serve --demo` (with its runner). Runs when
//! `PORTOLAN_TEST_CHROMEDRIVER` names chromedriver (CI installs it and sets it; then a browser that
//! will not start fails the test). Screenshots of the main pages, at a desktop's and a phone's
//! width, go to `target/browser-screenshots/`; no page may scroll sideways at either width.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::Server;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const ADMIN_PASSWORD: &str = "an admin password for the browser";

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

    /// Runs a script in the page; what it returns.
    async fn script(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    async fn resize(&self, width: u32, height: u32) {
        self.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": width, "height": height}))).await;
    }

    /// Presses keys in the element (WebDriver's key codes for arrows, Enter, Escape).
    async fn press(&self, css: &str, keys: &str) {
        let element = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{element}/value"), Some(json!({"text": keys}))).await;
    }

    /// The page as it reads at a desktop's width (1400×900) and a phone's (390×844): it never
    /// scrolls sideways (a table may, inside its own frame); a screenshot of each.
    async fn check_layout(&self, name: &str) {
        for (width, height, suffix) in [(1400, 900, ""), (390, 844, "-phone")] {
            self.resize(width, height).await;
            let measured = self
                .script(
                    "var w = window.innerWidth; var wide = [];
                     var inside = document.documentElement.clientWidth;
                     document.querySelectorAll('body *').forEach(function (e) {
                       var r = e.getBoundingClientRect();
                       var spills = e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === 'visible';
                       if ((r.right > inside + 1 || spills) && !e.parentElement.closest('.table-frame, .graph-frame, pre')) {
                         wide.push(e.tagName.toLowerCase() + '.' + e.className + ' ' + Math.round(r.right));
                       }
                     });
                     return [document.documentElement.scrollWidth, w, wide.slice(0, 8)];",
                )
                .await;
            self.screenshot(&format!("{name}{suffix}")).await;
            let (scroll, inner) = (measured[0].as_i64().unwrap_or(0), measured[1].as_i64().unwrap_or(0));
            assert!(
                scroll <= inner,
                "{name} at {width} px scrolls sideways: {scroll} > {inner} ({} on {})",
                measured[2],
                self.url().await
            );
        }
        self.resize(1400, 900).await;
    }

    /// The text the page shows (not what a closed "Raw" view holds) has no JSON in it.
    async fn assert_no_raw_json(&self, name: &str) {
        let text = self.script("return document.body.innerText;").await.as_str().unwrap_or_default().to_string();
        let json_like = text.lines().map(str::trim).find(|l| l.starts_with("{\"") || l.starts_with("[{") || *l == "{");
        assert!(json_like.is_none(), "{name} shows raw JSON ({json_like:?}): {text}");
    }

    /// Waits until the address has `part` in it (a form sent, a link followed).
    async fn wait_for_url(&self, part: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.url().await.contains(part) {
            assert!(Instant::now() < deadline, "never went to {part}: {}", self.url().await);
            tokio::time::sleep(Duration::from_millis(100)).await;
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
    let (server, _) = Server::start_bare(&["--demo", "--admin-password", ADMIN_PASSWORD], dir.path());
    let base = server.base.clone();
    let driver = Driver::start(&chromedriver).await;

    // Alice signs in, browses the catalog, filters it and opens a service.
    let alice = driver.open().await;
    alice.sign_in(&base, "alice@portolan.dev", "portolan-demo").await;
    alice.check_layout("home").await;
    let nav = alice.source().await;
    assert!(!nav.contains("href=\"/admin\""), "a member is not offered Admin: {nav}");
    // From the keyboard, the first Tab offers a way past the header; the next one walks into it.
    assert_eq!(alice.tab().await, "Skip to the page");
    alice.screenshot("home-keyboard").await;
    assert_eq!(alice.tab().await, "Portolan");
    alice.go(&format!("{base}/catalog")).await;
    assert!(alice.source().await.contains("href=\"/catalog/service\""));
    alice.check_layout("catalog").await;
    alice.go(&format!("{base}/catalog/service")).await;
    alice.type_into("#q", "cart").await;
    alice.click("div.search button").await;
    alice.wait_for_url("q=cart").await;
    let filtered = alice.wait_for("Cart Service", Duration::from_secs(5), false).await;
    assert!(!filtered.contains("Products Service"), "filtered by title");
    alice.screenshot("catalog-service").await;
    alice.go(&format!("{base}/catalog/service")).await;
    alice.check_layout("blueprint-table").await;
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
    alice.check_layout("entity").await;
    alice.go(&format!("{base}/inbox")).await;
    assert!(alice.source().await.contains("Where you are told"), "the inbox and its preferences");
    alice.check_layout("inbox").await;
    alice.go(&format!("{base}/actions")).await;
    assert!(alice.source().await.contains("<h2>Development environments</h2>"), "the hub groups by category");
    alice.check_layout("self-service").await;

    // She finds a service by typing: suggestions appear, arrows move through them, Enter opens one.
    alice.type_into("#find", "cart").await;
    alice.wait_for("role=\"option\"", Duration::from_secs(5), false).await;
    assert_eq!(alice.script("return document.getElementById('find').getAttribute('aria-expanded');").await, "true");
    alice.screenshot("search-suggestions").await;
    alice.press("#find", "\u{E00C}").await;
    assert_eq!(
        alice.script("return document.getElementById('find-suggestions').hidden;").await,
        true,
        "Escape closes the suggestions"
    );
    alice.type_into("#find", "cart-serv").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while alice.script("return document.getElementById('find-suggestions').hidden;").await == true {
        assert!(Instant::now() < deadline, "the suggestions did not open again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    alice.press("#find", "\u{E015}").await;
    let active = alice.script("return document.getElementById('find').getAttribute('aria-activedescendant');").await;
    assert_eq!(active, "find-option-0", "the first suggestion is chosen");
    alice.press("#find", "\u{E007}").await;
    alice.wait_for_url("/catalog/service/cart-service").await;
    alice.go(&format!("{base}/search?q=payment")).await;
    alice.wait_for("/catalog/", Duration::from_secs(5), false).await;
    alice.screenshot("search").await;

    // She spins up a developer environment through its form and watches the live log end.
    alice.go(&format!("{base}/actions/create_dev_environment")).await;
    alice.type_into("input[name='in.name']", "alice-dev").await;
    alice.click("select[name='in.service'] option[value='cart-service']").await;
    alice.check_layout("action-form").await;
    alice.click("button[value='run']").await;
    let run_page = alice.wait_for("data-status=\"SUCCESS\"", Duration::from_secs(30), true).await;
    assert!(run_page.contains("alice-dev is up until"), "the run's summary: {run_page}");
    assert!(run_page.contains(">Succeeded</span>") && run_page.contains(" · took "), "{run_page}");
    assert!(!run_page.contains("href=\"/api/v1/"), "its links open portal pages: {run_page}");
    alice.check_layout("run").await;
    alice.assert_no_raw_json("the run page").await;
    alice.go(&format!("{base}/catalog/environment/alice-dev")).await;
    let environment = alice.wait_for("alice-dev", Duration::from_secs(5), true).await;
    assert!(
        environment.contains("class=\"countdown\"") && environment.contains("ends in 4 days 23 hours"),
        "the environment's TTL counts down: {environment}"
    );
    assert!(environment.contains("by <a href=\"/runs/"), "it links the run that created it: {environment}");
    alice.check_layout("environment").await;
    alice.go(&format!("{base}/admin/actions/create_dev_environment?format=yaml")).await;
    let definition = alice.source().await;
    assert!(definition.contains("identifier: create_dev_environment"), "an action as YAML");
    assert!(!definition.contains("value=\"save\""), "a member is not offered Save: {definition}");

    // A deploy needs team-platform's approval: Carol gives it in her own browser.
    alice.go(&format!("{base}/actions/deploy_service?entity=cart-service")).await;
    alice.type_into("input[name='in.version']", "1.2.3").await;
    alice.click("button[value='run']").await;
    alice.wait_for("Waiting for approval", Duration::from_secs(10), false).await;
    alice.assert_no_raw_json("a run waiting for approval").await;
    let run_url = alice.url().await;
    let carol = driver.open().await;
    carol.sign_in(&base, "carol@portolan.dev", "portolan-demo").await;
    carol.go(&format!("{base}/approvals")).await;
    let inbox = carol.source().await;
    assert!(inbox.contains("Asked by alice@portolan.dev"), "{inbox}");
    carol.check_layout("approvals").await;
    carol.assert_no_raw_json("the approvals inbox").await;
    carol.go(&run_url).await;
    carol.type_into("#comment", "ship it").await;
    carol.click("button[value='APPROVE']").await;
    carol.wait_for("data-status=\"SUCCESS\"", Duration::from_secs(30), true).await;
    alice.wait_for("data-status=\"SUCCESS\"", Duration::from_secs(30), true).await;
    carol.go(&format!("{base}/audit?action=run.approve")).await;
    assert!(carol.source().await.contains("carol@portolan.dev"), "the approval is in the audit log");
    carol.go(&format!("{base}/scorecards")).await;
    carol.check_layout("scorecards").await;
    carol.click("a[href*='failing=']").await;
    carol.wait_for("Showing the entities failing", Duration::from_secs(5), false).await;
    carol.screenshot("scorecard-failing").await;
    // DORA over the demo's 90 days: bands, charts drawn on the server, and each bar a link to the
    // deployments it counts.
    carol.go(&format!("{base}/dora?days=90")).await;
    let dora = carol.source().await;
    assert!(dora.contains("class=\"band "), "the keys carry bands: {dora}");
    assert_eq!(dora.matches("<svg class=\"chart\"").count(), 4, "four trend charts");
    carol.check_layout("dora").await;
    carol.assert_no_raw_json("the DORA page").await;
    carol.go(&format!("{base}/dora?team=team-cart&days=30")).await;
    carol.check_layout("dora-team").await;
    let bar = carol
        .script(
            "var bars = Array.from(document.querySelectorAll('svg.chart a'));
             var drawn = bars.find(function (a) { return a.querySelector('rect').getBBox().height > 0; });
             return drawn.getAttribute('href');",
        )
        .await;
    carol.go(&format!("{base}{}", bar.as_str().expect("a bar with deployments"))).await;
    carol.wait_for_url("/catalog/deployment?where=").await;
    assert!(carol.source().await.contains("/catalog/deployment/cart-service-"), "the bar's deployments are listed");
    // The demo's initiative: half-way, with a burn-up, and a link that fixes what Products lacks.
    carol.go(&format!("{base}/initiatives")).await;
    carol.check_layout("initiatives").await;
    carol.click("a[href='/initiatives/gold-readiness']").await;
    carol.wait_for_url("/initiatives/gold-readiness").await;
    let initiative = carol.source().await;
    assert!(initiative.contains("<svg class=\"chart\""), "a burn-up: {initiative}");
    assert!(initiative.contains("polyline class=\"guide\""), "with the steady pace: {initiative}");
    carol.check_layout("initiative").await;
    carol.assert_no_raw_json("the initiative page").await;
    carol.click("a[href='/actions/update_pod_count?entity=products-service']").await;
    carol.wait_for_url("/actions/update_pod_count").await;
    // Dashboards: the demo's platform overview (a widget of each kind), a team's default, and a
    // slice of a pie leading to the entities it counts.
    carol.go(&format!("{base}/dashboards")).await;
    carol.check_layout("dashboards").await;
    carol.go(&format!("{base}/dashboards/platform")).await;
    let overview = carol.source().await;
    assert!(overview.contains("<svg class=\"chart pie\""), "a pie: {overview}");
    assert!(overview.contains("class=\"band "), "the DORA panel's bands: {overview}");
    carol.check_layout("dashboard").await;
    carol.assert_no_raw_json("the dashboard").await;
    carol.go(&format!("{base}/dashboards/teams/team-platform")).await;
    carol.check_layout("dashboard-team").await;
    carol.go(&format!("{base}/dashboards/platform")).await;
    let slice = carol.script("return document.querySelector('svg.pie a').getAttribute('href');").await;
    carol.go(&format!("{base}{}", slice.as_str().expect("a slice with a link"))).await;
    carol.wait_for_url("/catalog/service?where=").await;
    assert!(carol.source().await.contains("/catalog/service/"), "the slice's services are listed");

    // The admin sees the whole audit log and the administration, at both widths, in both themes.
    let admin = driver.open().await;
    admin.go(&format!("{base}/login")).await;
    admin.type_into("#username", "admin").await;
    admin.type_into("#password", ADMIN_PASSWORD).await;
    admin.click("form button[type=submit]").await;
    admin.wait_for("Hello, admin", Duration::from_secs(10), false).await;
    assert!(admin.source().await.contains("href=\"/admin\""), "an admin is offered Admin");
    admin.go(&format!("{base}/audit")).await;
    admin.check_layout("audit").await;
    admin.assert_no_raw_json("the audit log").await;
    admin.click("td.change details summary").await;
    admin.assert_no_raw_json("an audit change, opened").await;
    admin.screenshot("audit-change").await;
    admin.go(&format!("{base}/admin")).await;
    admin.check_layout("admin").await;
    admin.go(&format!("{base}/admin/actions/create_dev_environment?format=yaml")).await;
    assert!(admin.source().await.contains("value=\"save\""), "an admin is offered Save");
    admin.screenshot("admin-action").await;
    // The admin removes a golden path the demo installed, installs it again from the gallery
    // after its preview, and runs it.
    admin.go(&format!("{base}/admin/actions/run_health_checklist")).await;
    admin.type_into("#confirm", "run_health_checklist").await;
    admin.click("button[value='delete']").await;
    admin.wait_for("<h1>Administration</h1>", Duration::from_secs(10), false).await;
    admin.go(&format!("{base}/gallery")).await;
    let gallery = admin.source().await;
    assert!(gallery.contains("39 of 40 installed"), "the removed template is not installed: {gallery}");
    admin.check_layout("gallery").await;
    admin.click("a[href='/gallery/run_health_checklist']").await;
    admin.wait_for("What it installs", Duration::from_secs(5), false).await;
    admin.check_layout("gallery-template").await;
    admin.click("button[value='preview']").await;
    let preview = admin.wait_for("What installing would do", Duration::from_secs(10), false).await;
    assert!(preview.contains("<td>create</td><td>Action</td>"), "the preview creates the action: {preview}");
    assert!(preview.contains("<td>unchanged</td><td>Blueprint</td>"), "and keeps the blueprint: {preview}");
    admin.click("button[value='install']").await;
    admin.wait_for("Installed.", Duration::from_secs(10), false).await;
    admin.go(&format!("{base}/gallery")).await;
    assert!(admin.source().await.contains("40 of 40 installed"), "installed again");
    admin.go(&format!("{base}/actions/run_health_checklist?entity=cart-service")).await;
    admin.click("button[value='run']").await;
    let checked = admin.wait_for("data-status=\"SUCCESS\"", Duration::from_secs(30), true).await;
    assert!(checked.contains("checks pass"), "the checklist's summary: {checked}");
    let dark = json!({"cmd": "Emulation.setEmulatedMedia",
        "params": {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}});
    admin.call(reqwest::Method::POST, "/goog/cdp/execute", Some(dark)).await;
    admin.go(&format!("{base}/catalog/service/cart-service")).await;
    let background = admin.script("return getComputedStyle(document.documentElement).backgroundColor;").await;
    assert_eq!(background, "rgb(18, 22, 29)", "a dark page for a dark system theme");
    admin.screenshot("entity-dark").await;
    admin.go(&format!("{base}/audit")).await;
    admin.screenshot("audit-dark").await;

    // Bob, of another team, cannot see the cart team's resource anywhere.
    let bob = driver.open().await;
    bob.sign_in(&base, "bob@portolan.dev", "portolan-demo").await;
    for path in ["/", "/catalog/resource", "/catalog/resource?q=cart", "/search?q=cart", "/facets/resource", "/audit"] {
        bob.go(&format!("{base}{path}")).await;
        assert!(!bob.source().await.contains("cart-resource"), "{path} shows the hidden resource");
    }
    bob.go(&format!("{base}/catalog/resource/cart-resource")).await;
    assert!(bob.source().await.contains("Not found"));

    // Bob lets an assistant act for him: the consent page's form leads to the assistant's own
    // address (another origin), which the page's policy allows.
    let callback = format!("{}/callback", base.replace("127.0.0.1", "localhost"));
    let client: Value = crate::http_plain()
        .post(format!("{base}/oauth/register"))
        .json(&json!({"client_name": "Bob's editor", "redirect_uris": [callback]}))
        .send()
        .await
        .expect("registered")
        .json()
        .await
        .expect("json");
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", client["client_id"].as_str().expect("client id")),
            ("redirect_uri", &callback),
            ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
            ("code_challenge_method", "S256"),
            ("state", "from-the-browser"),
        ])
        .finish();
    bob.go(&format!("{base}/oauth/authorize?{query}")).await;
    assert!(bob.source().await.contains("Bob's editor"), "the consent page names the assistant");
    bob.check_layout("oauth-consent").await;
    bob.click("button[value=allow]").await;
    // The consent page's own address carries the state too: wait for the assistant's.
    bob.wait_for_url("/callback?code=").await;
    let landed = bob.url().await;
    assert!(landed.starts_with(&format!("{callback}?code=")), "the browser went to the assistant: {landed}");
    server.terminate();
}
