//! Pulled integrations (a REST source, GitHub, GitLab, PagerDuty): every page of every list is
//! read and mapped, and the entities are applied as the integration's own catalog-as-code
//! source, so that an item gone from the source is deleted from the catalog. A fetch that fails changes nothing; items that fail to map are
//! reported and keep what they had (nothing is deleted that sync); a pull that would delete more
//! than the threshold writes its creations and updates only, and says so.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portolan_model::blueprint::Blueprint;
use portolan_model::integration::definition::{DEFAULT_MAX_PAGES, PageTag};
use portolan_model::integration::mapping::{Operation, Outcome};
use portolan_model::integration::vendor::Endpoint;
use portolan_model::integration::{Integration, IntegrationStatus, Pagination, RestSource, Vendor, VendorSource};
use portolan_model::manifest::API_VERSION;
use serde_json::{Value, json};

use super::{Integrations, blueprints_by_id, check_entity, integration_actor};
use crate::error::{Error, ErrorCode, Result};
use crate::github::{Credential, GithubAccount};
use crate::outbound::Purpose;
use crate::services::actor::Actor;
use crate::services::manifests::{ApplyRequest, Op, SourcedDocument};

/// The largest page read.
const MAX_PAGE_BYTES: usize = 32 << 20;
/// How often a rate-limited or failing request is tried.
const ATTEMPTS: u32 = 3;
/// The longest a source may ask us to wait (`Retry-After`, a rate limit's reset).
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How long pages that answer 304 are trusted before every page is read again.
const FULL_READ_MS: i64 = 86_400_000;
/// How many item problems a status keeps.
const MAX_PROBLEMS: usize = 20;

/// A failed pull: why, in words; nothing was changed.
type Failure = String;

impl Integrations {
    /// Pulls an integration now (the actor must manage it); its new status.
    pub async fn sync_now(&self, actor: &Actor, id: &str) -> Result<IntegrationStatus> {
        let integration = self.get(actor, id).await?;
        if !integration.kind.is_pulled() {
            return Err(Error::invalid_at("/type", "a webhook integration is not pulled: its events are pushed"));
        }
        self.sync(id).await
    }

    /// Pulls every pulled integration that is due (one replica claims each).
    pub async fn sync_due(&self) -> Result<()> {
        loop {
            let claimed = {
                let mut tx = self.core.store().write().await?;
                let claimed = tx.claim_due_integration(self.core.now()).await?;
                tx.commit().await?;
                claimed
            };
            let Some(integration) = claimed else { return Ok(()) };
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(err) = this.sync(&integration.identifier).await {
                    tracing::warn!(integration = %integration.identifier, %err, "integration pull failed");
                }
            });
        }
    }

    /// Pulls and applies an integration; the outcome is kept as its status.
    pub async fn sync(&self, id: &str) -> Result<IntegrationStatus> {
        let lock =
            Arc::clone(self.pulling.lock().unwrap_or_else(|p| p.into_inner()).entry(id.to_string()).or_default());
        let _turn = lock.lock().await;
        let integration = {
            let mut tx = self.core.store().read().await?;
            tx.integration(id).await?.ok_or_else(|| Error::not_found(format!("integration '{id}'")))?
        };
        let started = Instant::now();
        let mut status = match self.pull(&integration).await {
            Ok(status) => status,
            Err(error) => IntegrationStatus {
                state: "failed".into(),
                error: Some(error),
                problems: Vec::new(),
                ..integration.status.clone()
            },
        };
        status.synced_at = Some(self.core.now());
        status.duration_ms = started.elapsed().as_millis() as u64;
        let mut tx = self.core.store().write().await?;
        if let Some(mut current) = tx.integration(id).await? {
            current.status = status.clone();
            tx.put_integration(&current, None).await?;
        }
        tx.commit().await?;
        Ok(status)
    }

    async fn pull(&self, integration: &Integration) -> std::result::Result<IntegrationStatus, Failure> {
        let (reader, blueprints) = self.reader(integration).await?;
        if let Some(unchanged) = self.unchanged(integration, &reader).await? {
            return Ok(unchanged);
        }
        let mut gathered = Gathered {
            status: IntegrationStatus {
                state: "ok".into(),
                read_at: Some(self.core.now()),
                ..IntegrationStatus::default()
            },
            documents: BTreeMap::new(),
        };
        match (&integration.source, integration.kind.vendor().zip(integration.vendor.as_ref())) {
            (Some(source), _) => {
                let file = without_query(&source.url);
                let mut pager = Pager::new(first_page(source)?, source.items_path(), &source.pagination);
                while let Some(items) = self.next_page(&reader, &mut pager, &mut gathered.status.pages).await? {
                    self.gather(integration, None, &file, items, &blueprints, &mut gathered).await;
                }
            }
            (None, Some((vendor, account))) => {
                self.pull_vendor(integration, vendor, account, &reader, &blueprints, &mut gathered).await?
            }
            _ => return Err("the integration has nothing to pull".into()),
        }
        self.apply_gathered(integration, gathered).await
    }

    /// The headers a pull's requests carry (its secrets opened; a GitHub App's installation
    /// token fetched) and the blueprints its entities are checked against.
    async fn reader(
        &self,
        integration: &Integration,
    ) -> std::result::Result<(Reader, HashMap<String, Blueprint>), Failure> {
        let mut tx = self.core.store().read().await.map_err(|e| e.to_string())?;
        let names: Vec<String> = integration.secret_names().into_iter().map(str::to_string).collect();
        let secrets = self.actions.secret_values(tx.as_mut(), &names).await.map_err(|e| e.message)?;
        let blueprints = blueprints_by_id(tx.as_mut()).await.map_err(|e| e.to_string())?;
        drop(tx);
        let secret = |name: &str| secrets.get(name).cloned().unwrap_or_default();
        let mut reader = Reader { headers: Vec::new(), max_pages: DEFAULT_MAX_PAGES };
        if let Some(source) = &integration.source {
            reader.headers.push(("accept".into(), "application/json".into()));
            if let Some(name) = &source.auth_secret {
                let header = source.auth_header.as_deref().unwrap_or("authorization");
                let prefix = source.auth_prefix.as_deref().unwrap_or("Bearer ");
                reader.headers.push((header.to_string(), format!("{prefix}{}", secret(name))));
            }
            reader.max_pages = source.max_pages.unwrap_or(DEFAULT_MAX_PAGES);
        }
        if let (Some(vendor), Some(account)) = (integration.kind.vendor(), &integration.vendor) {
            let token = match (&account.token_secret, &account.app) {
                (Some(name), _) => secret(name),
                (None, Some(app)) => {
                    let account = GithubAccount {
                        base_url: account.base_url(vendor).to_string(),
                        credential: Credential::App {
                            app_id: app.app_id.clone(),
                            installation_id: app.installation_id,
                            private_key: secret(&app.private_key_secret),
                        },
                    };
                    self.github.token(&account, self.core.now()).await?
                }
                (None, None) => return Err("the integration has no token".into()),
            };
            reader.headers = vendor.headers(&token).into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            reader.max_pages = account.max_pages.unwrap_or(DEFAULT_MAX_PAGES);
        }
        Ok((reader, blueprints))
    }

    /// Reads each kind the mapping names from the vendor, in the mapping's order; a kind listed
    /// per parent (pull requests per repository) lists the parents first, once.
    async fn pull_vendor(
        &self,
        integration: &Integration,
        vendor: Vendor,
        account: &VendorSource,
        reader: &Reader,
        blueprints: &HashMap<String, Blueprint>,
        gathered: &mut Gathered,
    ) -> std::result::Result<(), Failure> {
        let mut listed: HashMap<&'static str, Vec<Value>> = HashMap::new();
        for resource in &integration.mapping.resources {
            let endpoint = vendor
                .endpoint(&resource.kind)
                .ok_or_else(|| format!("{} lists no '{}'", vendor.name(), resource.kind))?;
            if listed.contains_key(endpoint.kind) {
                continue;
            }
            let mut items = match &endpoint.parent {
                None => {
                    self.read_list(reader, account.url(vendor, endpoint.path, "", ""), vendor, endpoint, gathered)
                        .await?
                }
                Some(parent) => {
                    if !listed.contains_key(parent.kind) {
                        let top = vendor.endpoint(parent.kind).ok_or("a parent is a listed kind")?;
                        let url = account.url(vendor, top.path, "", "");
                        let parents = self.read_list(reader, url, vendor, top, gathered).await?;
                        listed.insert(parent.kind, parents);
                    }
                    let mut items = Vec::new();
                    for each in listed.get(parent.kind).into_iter().flatten() {
                        let url = account.url(vendor, endpoint.path, "{parent}", &key_text(&each[parent.key]));
                        for mut item in self.read_list(reader, url, vendor, endpoint, gathered).await? {
                            if let Value::Object(fields) = &mut item {
                                fields.insert(parent.attach_as.into(), each[parent.value].clone());
                            }
                            items.push(item);
                        }
                    }
                    items
                }
            };
            if let Some(attached) = &endpoint.attached {
                for item in &mut items {
                    let url = account.url(vendor, attached.path, "{key}", &key_text(&item[attached.key]));
                    let list = self.read_list(reader, url, vendor, endpoint, gathered).await?;
                    if let Value::Object(fields) = item {
                        fields.insert(attached.attach_as.into(), Value::Array(list));
                    }
                }
            }
            let file = without_query(&account.url(vendor, endpoint.path, "{parent}", "*"));
            self.gather(integration, Some(endpoint.kind), &file, items.clone(), blueprints, gathered).await;
            listed.insert(endpoint.kind, items);
        }
        Ok(())
    }

    /// Every item of one of a vendor's lists (the first page only for lists read as recent).
    async fn read_list(
        &self,
        reader: &Reader,
        url: String,
        vendor: Vendor,
        endpoint: &Endpoint,
        gathered: &mut Gathered,
    ) -> std::result::Result<Vec<Value>, Failure> {
        let pagination = match endpoint.recent_only {
            true => Pagination::None,
            false => vendor.pagination(),
        };
        let mut pager = Pager::new(url, endpoint.items_path, &pagination);
        let mut items = Vec::new();
        while let Some(page) = self.next_page(reader, &mut pager, &mut gathered.status.pages).await? {
            items.extend(page);
        }
        Ok(items)
    }

    /// The next page's items, or `None` when the list is done.
    async fn next_page(
        &self,
        reader: &Reader,
        pager: &mut Pager<'_>,
        tags: &mut Vec<PageTag>,
    ) -> std::result::Result<Option<Vec<Value>>, Failure> {
        let Some(url) = pager.next.take() else { return Ok(None) };
        pager.pages += 1;
        if pager.pages > reader.max_pages {
            return Err(format!("{} has more than {} pages (maxPages)", without_query(&url), reader.max_pages));
        }
        let fetched = self.fetch(reader, &url, None).await?;
        let (Some(page), next_link) = (fetched.page, fetched.next) else {
            return Err(format!("{} answered 304 to a request without a tag", without_query(&url)));
        };
        if let Some(etag) = fetched.etag {
            tags.push(PageTag { url: url.clone(), etag });
        }
        let items = self.eval(pager.items_path, &page).await.map_err(|e| format!("itemsPath: {e}"))?;
        let Value::Array(items) = items else {
            return Err(format!(
                "itemsPath gave {}, not a list, on {}",
                portolan_model::blueprint::json_kind(&items),
                without_query(&url)
            ));
        };
        let count = items.len() as u64;
        pager.next = match pager.pagination {
            Pagination::None => None,
            Pagination::Link => next_link,
            Pagination::Cursor { param, path } => {
                match self.eval(path, &page).await.map_err(|e| format!("pagination path: {e}"))? {
                    Value::String(cursor) if !cursor.is_empty() => Some(with_param(&url, param, &cursor)?),
                    Value::Number(cursor) => Some(with_param(&url, param, &cursor.to_string())?),
                    _ => None,
                }
            }
            Pagination::Page { param, .. } if count > 0 => {
                pager.number += 1;
                Some(with_param(&url, param, &pager.number.to_string())?)
            }
            Pagination::Offset { param, size } if count >= *size => {
                pager.number += count;
                Some(with_param(&url, param, &pager.number.to_string())?)
            }
            Pagination::Page { .. } | Pagination::Offset { .. } => None,
        };
        Ok(Some(items))
    }

    /// Maps items with the resources of `kind` (every resource when none), keeping the
    /// entities and counting the items that fail.
    async fn gather(
        &self,
        integration: &Integration,
        kind: Option<&str>,
        file: &str,
        items: Vec<Value>,
        blueprints: &HashMap<String, Blueprint>,
        gathered: &mut Gathered,
    ) {
        let status = &mut gathered.status;
        let first = status.fetched;
        status.fetched += items.len() as u64;
        let mapped = self.map_each(&integration.mapping, kind, items).await;
        for (i, item) in mapped.into_iter().enumerate() {
            let number = first + i as u64 + 1;
            for mapped in item {
                let base = format!("/resources/{}/port/entity/mappings", mapped.resource);
                let problems = match &mapped.outcome {
                    Outcome::Error { path, message } => vec![format!("{path}: {message}")],
                    Outcome::Entity(document) => check_entity(blueprints, document, mapped.operation, &base)
                        .into_iter()
                        .map(|p| format!("{}: {}", p.path, p.message))
                        .collect(),
                };
                if !problems.is_empty() {
                    status.failed += 1;
                    let room = MAX_PROBLEMS.saturating_sub(status.problems.len());
                    let label = kind.map_or_else(|| format!("item {number}"), |kind| format!("{kind} item {number}"));
                    status.problems.extend(problems.into_iter().take(room).map(|p| format!("{label}: {p}")));
                    continue;
                }
                let Outcome::Entity(document) = mapped.outcome else { continue };
                let key = (
                    document["blueprint"].as_str().unwrap_or_default().to_string(),
                    document["identifier"].as_str().unwrap_or_default().to_string(),
                );
                match mapped.operation {
                    Operation::Create => gathered.documents.insert(key, (number, file.to_string(), document)),
                    Operation::Delete => gathered.documents.remove(&key),
                };
            }
        }
    }

    /// Applies what a pull gathered as the integration's source: what left the source is
    /// deleted, unless an item failed or the deletion threshold is passed.
    async fn apply_gathered(
        &self,
        integration: &Integration,
        gathered: Gathered,
    ) -> std::result::Result<IntegrationStatus, Failure> {
        let Gathered { mut status, documents } = gathered;
        let documents: Vec<SourcedDocument> = documents
            .into_values()
            .map(|(number, file, spec)| SourcedDocument {
                file,
                line: u32::try_from(number).unwrap_or(u32::MAX),
                document: json!({"apiVersion": API_VERSION, "kind": "Entity", "spec": spec}),
            })
            .collect();
        // An item that failed may be one the catalog holds: nothing is deleted this time.
        let prune = status.failed == 0;
        if !prune {
            status.state = "degraded".into();
            status.error = Some(format!("{} item(s) failed to map: nothing was deleted", status.failed));
        }
        let request = ApplyRequest {
            source: integration.source_name(),
            documents,
            dry_run: false,
            prune,
            max_delete_share: Some(integration.deletion_threshold()),
        };
        let actor = integration_actor(integration);
        let report = match self.manifests.apply(&actor, request.clone()).await {
            Ok(report) => report,
            Err(err) if err.code == ErrorCode::Conflict && prune => {
                // Over the deletion threshold: write what came, delete nothing, and say why.
                status.state = "degraded".into();
                status.error = Some(err.message);
                self.manifests.apply(&actor, ApplyRequest { prune: false, ..request }).await.map_err(applied)?
            }
            Err(err) => return Err(applied(err)),
        };
        let count = |op: Op| report.changes.iter().filter(|c| c.op == op && !c.implied).count() as u64;
        status.created = count(Op::Create);
        status.updated = count(Op::Update);
        status.unchanged = count(Op::Unchanged);
        status.deleted = count(Op::Delete);
        Ok(status)
    }

    /// One page: its JSON (none when `etag` still matches: 304), the `Link` header's next URL
    /// and the page's `ETag`. Rate limits are waited out (up to a minute); a server error or a
    /// timeout is tried again, then fails the pull.
    async fn fetch(&self, reader: &Reader, url: &str, etag: Option<&str>) -> std::result::Result<Fetched, Failure> {
        let shown = without_query(url);
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let mut request = self
                .outbound
                .request(Purpose::IntegrationSource, reqwest::Method::GET, url)
                .map_err(|e| e.to_string())?;
            for (name, value) in &reader.headers {
                request = request.header(name, value);
            }
            if let Some(etag) = etag {
                request = request.header("if-none-match", etag);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(err) => {
                    last = format!("cannot read {shown}: {err}");
                    continue;
                }
            };
            let status = response.status();
            let wait = crate::github::asked_wait(response.headers());
            // GitHub answers a spent rate limit with 403 and the rate-limit headers.
            let limited = status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || (status == reqwest::StatusCode::FORBIDDEN && wait.is_some());
            if limited || status.is_server_error() {
                last = format!("{shown} answered {status}");
                match wait {
                    Some(wait) if wait > MAX_WAIT => {
                        return Err(format!("{last} and asks to wait {}s", wait.as_secs()));
                    }
                    Some(wait) if attempt < ATTEMPTS => tokio::time::sleep(wait).await,
                    _ if attempt < ATTEMPTS => {
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await
                    }
                    _ => {}
                }
                continue;
            }
            let etag = response.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_string);
            if status == reqwest::StatusCode::NOT_MODIFIED {
                return Ok(Fetched { page: None, next: None, etag });
            }
            if !status.is_success() {
                return Err(format!("{shown} answered {status}"));
            }
            let next = next_link(response.headers());
            let body = read_capped(response).await.map_err(|e| format!("cannot read {shown}: {e}"))?;
            let page = serde_json::from_slice(&body).map_err(|e| format!("{shown} did not answer JSON: {e}"))?;
            return Ok(Fetched { page: Some(page), next, etag });
        }
        Err(last)
    }

    /// The last good pull's status again when every page it read still has its `ETag` (each
    /// answers 304, which GitHub does not count against the rate limit) and the integration did
    /// not change since: nothing is mapped or written. `None` when something may have changed.
    async fn unchanged(
        &self,
        integration: &Integration,
        reader: &Reader,
    ) -> std::result::Result<Option<IntegrationStatus>, Failure> {
        let last = &integration.status;
        // A page a source appended behind an unchanged last page would go unseen: every page is
        // read again at least once a day.
        let recent = last.read_at.is_some_and(|at| at >= integration.updated_at && self.core.now() - at < FULL_READ_MS);
        if last.state != "ok" || last.pages.is_empty() || !recent {
            return Ok(None);
        }
        for page in &last.pages {
            if self.fetch(reader, &page.url, Some(&page.etag)).await?.page.is_some() {
                return Ok(None);
            }
        }
        Ok(Some(IntegrationStatus {
            created: 0,
            updated: 0,
            deleted: 0,
            unchanged: last.created + last.updated + last.unchanged,
            ..last.clone()
        }))
    }
}

/// What every request of a pull carries, and the most pages a list may have.
struct Reader {
    headers: Vec<(String, String)>,
    max_pages: u32,
}

/// A list being read: the next page's URL, and where the pagination is.
struct Pager<'a> {
    next: Option<String>,
    items_path: &'a str,
    pagination: &'a Pagination,
    /// The page number or offset of the page last asked for.
    number: u64,
    pages: u32,
}

impl<'a> Pager<'a> {
    fn new(first: String, items_path: &'a str, pagination: &'a Pagination) -> Self {
        let number = match pagination {
            Pagination::Page { start, .. } => start.unwrap_or(1),
            _ => 0,
        };
        Pager { next: Some(first), items_path, pagination, number, pages: 0 }
    }
}

/// What a pull read so far: its status, and the entities by blueprint and identifier (a later
/// item for the same entity wins) with the item number and list they came from.
struct Gathered {
    status: IntegrationStatus,
    documents: BTreeMap<(String, String), (u64, String, Value)>,
}

/// An item's key as it goes in a URL (GitLab's project ids are numbers).
fn key_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A page as fetched: none when it did not change since its tag.
struct Fetched {
    page: Option<Value>,
    next: Option<String>,
    etag: Option<String>,
}

fn applied(err: Error) -> Failure {
    let mut message = err.message;
    if let Some(first) = err.details.first() {
        message.push_str(&format!("; first: {first}"));
    }
    message
}

fn first_page(source: &RestSource) -> std::result::Result<String, Failure> {
    match &source.pagination {
        Pagination::Page { param, start } => with_param(&source.url, param, &start.unwrap_or(1).to_string()),
        _ => Ok(source.url.clone()),
    }
}

/// `url` with query parameter `name` set to `value` (replacing it).
fn with_param(url: &str, name: &str, value: &str) -> std::result::Result<String, Failure> {
    let mut parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let kept: Vec<(String, String)> =
        parsed.query_pairs().filter(|(k, _)| k != name).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    parsed.query_pairs_mut().clear().extend_pairs(kept).append_pair(name, value);
    Ok(parsed.to_string())
}

/// A URL as shown in statuses: its query may hold a credential.
fn without_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or_default().to_string()
}

/// `rel="next"` of a `Link` header (RFC 8288), as GitHub and GitLab send it.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers.get_all(reqwest::header::LINK).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).find_map(
        |link| {
            let (target, params) = link.trim().split_once(';')?;
            let is_next = params.split(';').any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            is_next.then(|| target.trim().trim_start_matches('<').trim_end_matches('>').to_string())
        },
    )
}

async fn read_capped(mut response: reqwest::Response) -> std::result::Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_PAGE_BYTES {
            return Err(format!("a page is larger than {} MiB", MAX_PAGE_BYTES >> 20));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_and_query_parameters() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::LINK,
            "<https://api.github.com/orgs/o/repos?page=3>; rel=\"next\", <https://api.github.com/orgs/o/repos?page=9>; rel=\"last\""
                .parse()
                .expect("header"),
        );
        assert_eq!(next_link(&headers).as_deref(), Some("https://api.github.com/orgs/o/repos?page=3"));
        assert_eq!(next_link(&reqwest::header::HeaderMap::new()), None);
        assert_eq!(
            with_param("https://x.test/items?page=1&size=50", "page", "2").expect("url"),
            "https://x.test/items?size=50&page=2"
        );
        assert_eq!(without_query("https://x.test/items?token=s3cret"), "https://x.test/items");
    }
}
