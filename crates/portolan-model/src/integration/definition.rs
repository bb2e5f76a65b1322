//! An integration as configured: a webhook that senders push events to, or a REST source the
//! server pulls on a schedule; either way, its mapping turns what arrives into entities.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::mapping::Mapping;
use super::security::Security;
use super::vendor::{Vendor, VendorSource};
use crate::Millis;
use crate::error::FieldErrors;
use crate::ident::check_schema_identifier;
use crate::manifest::location::DEFAULT_DELETION_THRESHOLD;

/// How long an integration keeps its events, unless it says otherwise.
pub const DEFAULT_RETENTION_DAYS: u32 = 7;
pub const MAX_RETENTION_DAYS: u32 = 90;
/// Seconds between scheduled pulls, unless the integration says otherwise.
pub const DEFAULT_INTERVAL_SECONDS: i64 = 3_600;
/// Names the portal's own integration pages use.
const RESERVED_IDENTIFIERS: [&str; 2] = ["test-mapping", "webhooks"];
/// Most pages one pull reads.
pub const DEFAULT_MAX_PAGES: u32 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IntegrationKind {
    /// Senders push events to the integration's ingest URL.
    Webhook,
    /// The server pulls a REST API on a schedule and keeps the catalog in step with it.
    Rest,
    /// Pulled from GitHub: each resource's kind is one of its lists (repositories, pull requests,
    /// workflow runs, deployments, releases, teams, members).
    Github,
    /// Pulled from GitLab: projects, merge requests, pipelines, deployments.
    Gitlab,
    /// Pulled from PagerDuty: services, incidents, on-calls, schedules, escalation policies.
    Pagerduty,
}

impl IntegrationKind {
    pub fn vendor(self) -> Option<Vendor> {
        match self {
            IntegrationKind::Github => Some(Vendor::Github),
            IntegrationKind::Gitlab => Some(Vendor::Gitlab),
            IntegrationKind::Pagerduty => Some(Vendor::Pagerduty),
            IntegrationKind::Webhook | IntegrationKind::Rest => None,
        }
    }

    /// Whether the server pulls it on a schedule (every kind but webhooks).
    pub fn is_pulled(self) -> bool {
        self != IntegrationKind::Webhook
    }

    pub fn name(self) -> &'static str {
        match self {
            IntegrationKind::Webhook => "webhook",
            IntegrationKind::Rest => "rest",
            IntegrationKind::Github => "github",
            IntegrationKind::Gitlab => "gitlab",
            IntegrationKind::Pagerduty => "pagerduty",
        }
    }
}

/// An integration as a client writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntegrationInput {
    pub identifier: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(rename = "type")]
    pub kind: IntegrationKind,
    /// The mapping (`resources`, ...). A webhook's items are `{body, headers, queryParams}`; a
    /// REST source's are the elements its `itemsPath` gives.
    #[schema(value_type = Object)]
    pub mapping: Value,
    /// How a webhook's requests are checked (none: the ingest URL's key is the only guard).
    #[serde(default)]
    pub security: Option<Security>,
    /// A REST integration's source.
    #[serde(default)]
    pub source: Option<RestSource>,
    /// A GitHub, GitLab or PagerDuty integration's account.
    #[serde(default)]
    pub vendor: Option<VendorSource>,
    /// Seconds between a pulled integration's pulls (default 3600, at least 10).
    #[serde(default)]
    pub interval_seconds: Option<i64>,
    /// Days an event is kept in the integration's event log (default 7, at most 90).
    #[serde(default)]
    pub event_retention_days: Option<u32>,
}

/// Where a REST integration reads its items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestSource {
    /// The first page's URL.
    pub url: String,
    /// A stored secret sent in `authHeader` (after `authPrefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret: Option<String>,
    /// Default `Authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_header: Option<String>,
    /// Default `Bearer ` (with the space).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_prefix: Option<String>,
    /// jq over a page giving its items (default `.`: the page is the list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_path: Option<String>,
    #[serde(default)]
    pub pagination: Pagination,
    /// Most pages one pull reads (default 1000); a source with more fails the pull.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pages: Option<u32>,
}

impl RestSource {
    pub fn items_path(&self) -> &str {
        self.items_path.as_deref().unwrap_or(".")
    }
}

/// How a REST source's next page is found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Pagination {
    /// One page.
    #[default]
    None,
    /// The `Link` header's `rel="next"` URL (GitHub's and GitLab's way).
    Link,
    /// jq over a page giving the next cursor (null or empty ends), sent as query `param`.
    Cursor { param: String, path: String },
    /// Pages numbered from `start` (default 1) in query `param`; an empty page ends.
    Page {
        param: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<u64>,
    },
    /// Items counted from 0 in query `param`, `size` to a page (PagerDuty's way); a short page
    /// ends.
    Offset { param: String, size: u64 },
}

/// What a REST integration's last pull did (a webhook integration's stays `ok`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationStatus {
    /// `pending` (never pulled), `ok`, `degraded` (written, but some items failed or nothing was
    /// deleted for safety) or `failed` (nothing changed).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_at: Option<Millis>,
    #[serde(default)]
    pub duration_ms: u64,
    /// Items read from the source.
    #[serde(default)]
    pub fetched: u64,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub updated: u64,
    #[serde(default)]
    pub unchanged: u64,
    #[serde(default)]
    pub deleted: u64,
    /// Items whose mapping or entity failed.
    #[serde(default)]
    pub failed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The first item problems, each with its item and the mapping's JSON pointer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Each page the last pull read with its `ETag`, when the source sends them: the next pull
    /// asks whether they changed before reading anything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<PageTag>,
    /// When a pull last read and applied every page (a pull whose pages were all unchanged does
    /// not move it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<Millis>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageTag {
    pub url: String,
    pub etag: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Integration {
    pub identifier: String,
    pub title: String,
    #[serde(rename = "type")]
    pub kind: IntegrationKind,
    pub mapping: Mapping,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<RestSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<VendorSource>,
    pub interval_seconds: i64,
    pub event_retention_days: u32,
    pub status: IntegrationStatus,
    /// When a REST integration is pulled next.
    pub next_sync_at: Millis,
    pub created_at: Millis,
    pub created_by: String,
    pub updated_at: Millis,
}

impl Integration {
    /// The catalog-as-code source its pulled entities are recorded under.
    pub fn source_name(&self) -> String {
        format!("integration:{}", self.identifier)
    }

    /// The stored secrets it reads.
    pub fn secret_names(&self) -> Vec<&str> {
        let webhook = self.security.as_ref().and_then(|s| s.secret.as_deref());
        let source = self.source.as_ref().and_then(|s| s.auth_secret.as_deref());
        let vendor = self.vendor.iter().flat_map(VendorSource::secret_names);
        webhook.into_iter().chain(source).chain(vendor).collect()
    }

    /// The share of what it owns one pull may delete.
    pub fn deletion_threshold(&self) -> f64 {
        self.mapping.entity_deletion_threshold.unwrap_or(DEFAULT_DELETION_THRESHOLD)
    }

    /// The blueprints its mapping writes to; `None` when a resource picks its blueprint with jq
    /// (it could be any) rather than naming it as a literal.
    pub fn target_blueprints(&self) -> Option<Vec<String>> {
        let mut ids = self
            .mapping
            .resources
            .iter()
            .map(|r| serde_json::from_str::<String>(r.port.entity.mappings.blueprint.trim()).ok())
            .collect::<Option<Vec<String>>>()?;
        ids.sort();
        ids.dedup();
        Some(ids)
    }
}

impl IntegrationInput {
    /// Checks an integration and fills in the defaults; `existing` keeps what an update does not
    /// change (creation time and status).
    pub fn into_integration(
        self,
        now: Millis,
        by: &str,
        existing: Option<&Integration>,
    ) -> Result<Integration, FieldErrors> {
        let mut errors = FieldErrors::default();
        if let Err(message) = check_schema_identifier(&self.identifier) {
            errors.push("/identifier", message);
        }
        if RESERVED_IDENTIFIERS.contains(&self.identifier.as_str()) {
            errors.push("/identifier", format!("'{}' names a page of the portal: choose another", self.identifier));
        }
        let mapping = match Mapping::parse(self.mapping) {
            Ok(mapping) => Some(mapping),
            Err(found) => {
                for e in found.0 {
                    errors.push(format!("/mapping{}", e.path), e.message);
                }
                None
            }
        };
        match (self.kind, &self.source) {
            (IntegrationKind::Rest, None) => errors.push("/source", "a REST integration needs a source"),
            (IntegrationKind::Rest, Some(source)) => source.check(&mut errors),
            (_, Some(_)) => errors.push("/source", format!("a {} integration has no REST source", self.kind.name())),
            (_, None) => {}
        }
        match (self.kind.vendor(), &self.vendor) {
            (Some(vendor), None) => errors.push("/vendor", format!("the {} account to read", vendor.name())),
            (Some(vendor), Some(source)) => {
                let kinds = match &mapping {
                    Some(mapping) => mapping.resources.iter().map(|r| r.kind.as_str()).collect(),
                    None => Vec::new(),
                };
                source.check(vendor, &kinds, &mut errors);
            }
            (None, Some(_)) => errors.push("/vendor", format!("a {} integration reads no vendor", self.kind.name())),
            (None, None) => {}
        }
        if let Some(security) = &self.security {
            if self.kind != IntegrationKind::Webhook {
                errors.push("/security", "only a webhook integration takes webhook security");
            }
            security.check(&mut errors);
        }
        let interval = self.interval_seconds.unwrap_or(DEFAULT_INTERVAL_SECONDS);
        if interval < 10 {
            errors.push("/intervalSeconds", "pulls are at least 10 seconds apart");
        }
        let retention = self.event_retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
        if !(1..=MAX_RETENTION_DAYS).contains(&retention) {
            errors.push("/eventRetentionDays", format!("events are kept 1 to {MAX_RETENTION_DAYS} days"));
        }
        let Some(mapping) = mapping else { return Err(errors) };
        let title = self.title.filter(|t| !t.trim().is_empty()).unwrap_or_else(|| self.identifier.clone());
        let status = match existing {
            Some(existing) => existing.status.clone(),
            None => IntegrationStatus { state: "pending".into(), ..IntegrationStatus::default() },
        };
        errors.into_result(Integration {
            identifier: self.identifier,
            title,
            kind: self.kind,
            mapping,
            security: self.security,
            source: self.source,
            vendor: self.vendor,
            interval_seconds: interval,
            event_retention_days: retention,
            status,
            next_sync_at: existing.map_or(now, |e| e.next_sync_at.min(now + interval * 1000)),
            created_at: existing.map_or(now, |e| e.created_at),
            created_by: existing.map_or_else(|| by.to_string(), |e| e.created_by.clone()),
            updated_at: now,
        })
    }
}

impl RestSource {
    fn check(&self, errors: &mut FieldErrors) {
        match url::Url::parse(&self.url) {
            Ok(url) if ["http", "https"].contains(&url.scheme()) => {}
            _ => errors.push("/source/url", "an http or https URL"),
        }
        if let Some(header) = &self.auth_header
            && !is_header_name(header)
        {
            errors.push("/source/authHeader", "an HTTP header name");
        }
        if let Err(message) = crate::jq::check(self.items_path()) {
            errors.push("/source/itemsPath", message);
        }
        match &self.pagination {
            Pagination::Cursor { param, path } => {
                if param.is_empty() {
                    errors.push("/source/pagination/param", "the query parameter the cursor goes in");
                }
                if let Err(message) = crate::jq::check(path) {
                    errors.push("/source/pagination/path", message);
                }
            }
            Pagination::Page { param, .. } if param.is_empty() => {
                errors.push("/source/pagination/param", "the query parameter the page number goes in");
            }
            Pagination::Offset { param, size } => {
                if param.is_empty() {
                    errors.push("/source/pagination/param", "the query parameter the offset goes in");
                }
                if *size == 0 {
                    errors.push("/source/pagination/size", "at least one item to a page");
                }
            }
            _ => {}
        }
        if self.max_pages == Some(0) {
            errors.push("/source/maxPages", "at least one page");
        }
    }
}

pub(crate) fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 100 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(document: Value) -> Result<Integration, Vec<String>> {
        let input: IntegrationInput = serde_json::from_value(document).expect("the input's shape");
        input.into_integration(1_000, "alice", None).map_err(|e| e.0.into_iter().map(|e| e.path).collect())
    }

    fn mapping() -> Value {
        json!({"resources": [{"kind": "repo", "port": {"entity": {"mappings": {
            "identifier": ".name", "blueprint": "\"service\"", "title": ".name"}}}}]})
    }

    #[test]
    fn an_integration_gets_its_defaults_and_its_target_blueprints() {
        let rest = input(json!({"identifier": "repos", "type": "rest", "mapping": mapping(),
            "source": {"url": "https://api.example.com/repos", "pagination": {"type": "link"}}}))
        .expect("valid");
        assert_eq!(rest.title, "repos");
        assert_eq!(rest.interval_seconds, DEFAULT_INTERVAL_SECONDS);
        assert_eq!(rest.status.state, "pending");
        assert_eq!(rest.target_blueprints(), Some(vec!["service".to_string()]));
        assert_eq!(rest.source_name(), "integration:repos");
    }

    #[test]
    fn every_problem_is_named_by_its_pointer() {
        let paths = input(json!({"identifier": "Bad Id", "type": "rest", "mapping": {"resources": [{"kind": "",
            "port": {"entity": {"mappings": {"identifier": ".[", "blueprint": "\"s\""}}}}]},
            "source": {"url": "ftp://x", "itemsPath": ".items[", "authHeader": "bad header",
                "pagination": {"type": "cursor", "param": "", "path": ".next"}},
            "intervalSeconds": 1, "eventRetentionDays": 400}))
        .expect_err("invalid");
        for path in [
            "/identifier",
            "/mapping/resources/0/kind",
            "/mapping/resources/0/port/entity/mappings/identifier",
            "/source/url",
            "/source/authHeader",
            "/source/itemsPath",
            "/source/pagination/param",
            "/intervalSeconds",
            "/eventRetentionDays",
        ] {
            assert!(paths.contains(&path.to_string()), "{path} in {paths:?}");
        }
        let paths = input(json!({"identifier": "hook", "type": "webhook", "mapping": mapping(),
            "source": {"url": "https://x"}}))
        .expect_err("a webhook has no source");
        assert_eq!(paths, ["/source"]);
    }
}
