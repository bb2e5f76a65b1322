//! The vendors an integration can pull without being told their API: GitHub, GitLab and
//! PagerDuty. A mapping resource's `kind` names what is read (`repository`, `pull-request`, ...),
//! and each kind is listed from the endpoint the vendor documents for it, paged the vendor's way.

use serde::{Deserialize, Serialize};

use super::definition::Pagination;
use crate::error::FieldErrors;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Github,
    Gitlab,
    Pagerduty,
}

/// The account a vendor integration reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VendorSource {
    /// The API's root; default the vendor's cloud (`https://api.github.com`,
    /// `https://gitlab.com/api/v4`, `https://api.pagerduty.com`). Set it for GitHub Enterprise
    /// Server (`https://github.example.com/api/v3`) or a self-managed GitLab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// GitHub: the organization; GitLab: the group's id or full path (`acme/platform`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// The stored secret holding the API token (GitHub: a token; GitLab: a personal, group or
    /// project access token; PagerDuty: a REST API key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<String>,
    /// GitHub only: read as a GitHub App installation instead of with a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<GithubApp>,
    /// Most pages read per list (default 1000); a list with more fails the pull.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pages: Option<u32>,
}

/// A GitHub App installation: the app signs a JWT with its private key and trades it for an
/// installation token at each pull.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GithubApp {
    pub app_id: String,
    pub installation_id: u64,
    /// The stored secret holding the app's private key (PEM).
    pub private_key_secret: String,
}

/// Where one kind of a vendor's items is listed.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub kind: &'static str,
    /// Under the base URL; `{org}` is the organization, `{parent}` the parent item's key.
    pub path: &'static str,
    /// jq over a page giving its items.
    pub items_path: &'static str,
    /// Listed once for each item of another kind.
    pub parent: Option<Parent>,
    /// Lists that grow without end (runs, deployments) are read for their most recent page only.
    pub recent_only: bool,
    /// A list read for each item and attached to it.
    pub attached: Option<Attached>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parent {
    pub kind: &'static str,
    /// The parent's field that goes in the path.
    pub key: &'static str,
    /// Each item gets the parent's `value` field under this name.
    pub attach_as: &'static str,
    pub value: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attached {
    /// Under the base URL; `{org}` is the organization, `{key}` the item's `key` field.
    pub path: &'static str,
    pub key: &'static str,
    pub attach_as: &'static str,
}

const fn listed(kind: &'static str, path: &'static str, items_path: &'static str) -> Endpoint {
    Endpoint { kind, path, items_path, parent: None, recent_only: false, attached: None }
}

const fn per_parent(
    kind: &'static str,
    path: &'static str,
    items_path: &'static str,
    parent: Parent,
    recent_only: bool,
) -> Endpoint {
    Endpoint { kind, path, items_path, parent: Some(parent), recent_only, attached: None }
}

const GITHUB_REPOSITORY: Parent =
    Parent { kind: "repository", key: "full_name", attach_as: "__repository", value: "name" };
const GITLAB_PROJECT: Parent =
    Parent { kind: "project", key: "id", attach_as: "__project", value: "path_with_namespace" };

const GITHUB: [Endpoint; 7] = [
    listed("repository", "/orgs/{org}/repos?per_page=100", "."),
    per_parent("pull-request", "/repos/{parent}/pulls?state=open&per_page=100", ".", GITHUB_REPOSITORY, false),
    per_parent("workflow-run", "/repos/{parent}/actions/runs?per_page=100", ".workflow_runs", GITHUB_REPOSITORY, true),
    per_parent("deployment", "/repos/{parent}/deployments?per_page=100", ".", GITHUB_REPOSITORY, true),
    per_parent("release", "/repos/{parent}/releases?per_page=100", ".", GITHUB_REPOSITORY, true),
    Endpoint {
        attached: Some(Attached {
            path: "/orgs/{org}/teams/{key}/members?per_page=100",
            key: "slug",
            attach_as: "__members",
        }),
        ..listed("team", "/orgs/{org}/teams?per_page=100", ".")
    },
    listed("user", "/orgs/{org}/members?per_page=100", "."),
];

const GITLAB: [Endpoint; 4] = [
    listed("project", "/groups/{org}/projects?include_subgroups=true&per_page=100", "."),
    listed("merge-request", "/groups/{org}/merge_requests?state=opened&per_page=100", "."),
    per_parent("pipeline", "/projects/{parent}/pipelines?per_page=100", ".", GITLAB_PROJECT, true),
    per_parent(
        "deployment",
        "/projects/{parent}/deployments?order_by=created_at&sort=desc&per_page=100",
        ".",
        GITLAB_PROJECT,
        true,
    ),
];

const PAGERDUTY: [Endpoint; 5] = [
    listed("services", "/services?limit=100", ".services"),
    listed("incidents", "/incidents?limit=100", ".incidents"),
    listed("oncalls", "/oncalls?limit=100", ".oncalls"),
    listed("schedules", "/schedules?limit=100", ".schedules"),
    listed("escalation_policies", "/escalation_policies?limit=100", ".escalation_policies"),
];

impl Vendor {
    pub fn name(self) -> &'static str {
        match self {
            Vendor::Github => "GitHub",
            Vendor::Gitlab => "GitLab",
            Vendor::Pagerduty => "PagerDuty",
        }
    }

    pub fn default_base_url(self) -> &'static str {
        match self {
            Vendor::Github => "https://api.github.com",
            Vendor::Gitlab => "https://gitlab.com/api/v4",
            Vendor::Pagerduty => "https://api.pagerduty.com",
        }
    }

    pub fn endpoints(self) -> &'static [Endpoint] {
        match self {
            Vendor::Github => &GITHUB,
            Vendor::Gitlab => &GITLAB,
            Vendor::Pagerduty => &PAGERDUTY,
        }
    }

    pub fn endpoint(self, kind: &str) -> Option<&'static Endpoint> {
        self.endpoints().iter().find(|e| e.kind == kind)
    }

    /// How the vendor pages its lists: GitHub and GitLab by `Link` header, PagerDuty by offset.
    pub fn pagination(self) -> Pagination {
        match self {
            Vendor::Github | Vendor::Gitlab => Pagination::Link,
            Vendor::Pagerduty => Pagination::Offset { param: "offset".into(), size: 100 },
        }
    }

    /// The headers every request carries, with the token as the vendor takes it.
    pub fn headers(self, token: &str) -> Vec<(&'static str, String)> {
        match self {
            Vendor::Github => vec![
                ("authorization", format!("Bearer {token}")),
                ("accept", "application/vnd.github+json".into()),
                ("x-github-api-version", "2022-11-28".into()),
            ],
            Vendor::Gitlab => vec![("private-token", token.into()), ("accept", "application/json".into())],
            Vendor::Pagerduty => vec![
                ("authorization", format!("Token token={token}")),
                ("accept", "application/vnd.pagerduty+json;version=2".into()),
            ],
        }
    }
}

impl VendorSource {
    pub fn base_url(&self, vendor: Vendor) -> &str {
        self.base_url.as_deref().unwrap_or(vendor.default_base_url()).trim_end_matches('/')
    }

    /// The URL of `path` (an endpoint's), with the organization and `{placeholder}` filled in.
    pub fn url(&self, vendor: Vendor, path: &str, placeholder: &str, value: &str) -> String {
        // A GitLab group path is one segment of the URL: its slashes are escaped.
        let org = self.organization.as_deref().unwrap_or_default().replace('/', "%2F");
        let path = path.replace("{org}", &org).replace(placeholder, value);
        format!("{}{path}", self.base_url(vendor))
    }

    pub fn check(&self, vendor: Vendor, kinds: &[&str], errors: &mut FieldErrors) {
        if let Some(base) = &self.base_url {
            match url::Url::parse(base) {
                Ok(url) if ["http", "https"].contains(&url.scheme()) => {}
                _ => errors.push("/vendor/baseUrl", "an http or https URL"),
            }
        }
        let org_ok = |org: &str| {
            !org.is_empty()
                && org.len() <= 255
                && org.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        };
        match (vendor, self.organization.as_deref()) {
            (Vendor::Pagerduty, Some(_)) => errors.push("/vendor/organization", "PagerDuty reads the whole account"),
            (Vendor::Github | Vendor::Gitlab, None) => errors.push(
                "/vendor/organization",
                format!(
                    "the {} {} to read",
                    vendor.name(),
                    if vendor == Vendor::Github { "organization" } else { "group" }
                ),
            ),
            (_, Some(org)) if !org_ok(org) => {
                errors.push("/vendor/organization", "letters, digits, '-', '_', '.' and '/'")
            }
            _ => {}
        }
        match (&self.token_secret, &self.app) {
            (Some(_), Some(_)) => errors.push("/vendor/app", "a token or an app, not both"),
            (None, None) => errors.push("/vendor/tokenSecret", "the stored secret holding the API token"),
            (None, Some(_)) if vendor != Vendor::Github => errors.push("/vendor/app", "only GitHub has apps"),
            _ => {}
        }
        if self.max_pages == Some(0) {
            errors.push("/vendor/maxPages", "at least one page");
        }
        for (i, kind) in kinds.iter().enumerate() {
            if vendor.endpoint(kind).is_none() {
                let known: Vec<&str> = vendor.endpoints().iter().map(|e| e.kind).collect();
                errors.push(
                    format!("/mapping/resources/{i}/kind"),
                    format!("{} lists {}", vendor.name(), known.join(", ")),
                );
            }
        }
    }

    /// The stored secrets it reads.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.token_secret.as_deref().into_iter().chain(self.app.as_ref().map(|a| a.private_key_secret.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_its_own_endpoint_and_parents_are_listed_kinds() {
        for vendor in [Vendor::Github, Vendor::Gitlab, Vendor::Pagerduty] {
            for endpoint in vendor.endpoints() {
                if let Some(parent) = &endpoint.parent {
                    let read = vendor.endpoint(parent.kind).expect("a parent is a kind of its own");
                    assert!(read.parent.is_none(), "{}: parents are top-level lists", endpoint.kind);
                    assert!(endpoint.path.contains("{parent}"), "{}", endpoint.kind);
                }
                assert!(crate::jq::check(endpoint.items_path).is_ok(), "{}", endpoint.kind);
            }
        }
        let source = VendorSource {
            base_url: Some("https://gitlab.example.com/api/v4/".into()),
            organization: Some("acme/platform".into()),
            token_secret: Some("gitlab".into()),
            app: None,
            max_pages: None,
        };
        let project = Vendor::Gitlab.endpoint("pipeline").expect("pipelines");
        assert_eq!(
            source.url(Vendor::Gitlab, project.path, "{parent}", "42"),
            "https://gitlab.example.com/api/v4/projects/42/pipelines?per_page=100"
        );
        let projects = Vendor::Gitlab.endpoint("project").expect("projects");
        assert_eq!(
            source.url(Vendor::Gitlab, projects.path, "{parent}", ""),
            "https://gitlab.example.com/api/v4/groups/acme%2Fplatform/projects?include_subgroups=true&per_page=100"
        );
    }

    #[test]
    fn a_vendor_source_names_what_is_missing_or_unknown() {
        let mut errors = FieldErrors::default();
        let source = VendorSource {
            base_url: Some("ftp://x".into()),
            organization: None,
            token_secret: None,
            app: None,
            max_pages: Some(0),
        };
        source.check(Vendor::Github, &["repository", "repo"], &mut errors);
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/vendor/baseUrl",
                "/vendor/organization",
                "/vendor/tokenSecret",
                "/vendor/maxPages",
                "/mapping/resources/1/kind"
            ]
        );
        assert!(errors.0[4].message.contains("pull-request"), "{}", errors.0[4].message);
    }
}
