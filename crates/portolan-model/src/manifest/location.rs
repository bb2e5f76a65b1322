//! Locations: a git repository (or a folder, or one file) whose manifest files the server keeps
//! the catalog in step with, on a schedule and on a push.

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::error::FieldErrors;

/// The files a location reads when it names none: Backstage descriptors anywhere, and
/// Portolan documents under `portolan/`.
pub const DEFAULT_PATHS: [&str; 4] =
    ["**/catalog-info.yaml", "**/catalog-info.yml", "portolan/**/*.yaml", "portolan/**/*.yml"];

/// The share of its entities one sync of a location may delete (Port's `entityDeletionThreshold`).
pub const DEFAULT_DELETION_THRESHOLD: f64 = 0.9;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LocationKind {
    /// A git repository: a URL (`https://`, `ssh://`, `file://`) or a local path.
    Git,
    /// A folder or one file on the server's disk.
    File,
}

/// A location as registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocationInput {
    #[serde(rename = "type")]
    pub kind: LocationKind,
    pub target: String,
    /// The branch of a git location (its default branch when absent).
    #[serde(default)]
    pub branch: Option<String>,
    /// Globs of the files to read, relative to the repository or folder.
    #[serde(default)]
    pub paths: Vec<String>,
    /// The secret holding a token for an HTTPS repository (sent as HTTP basic auth).
    #[serde(default)]
    pub token_secret: Option<String>,
    /// The secret GitHub signs push webhooks with, or GitLab sends as `X-Gitlab-Token`.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// Seconds between scheduled syncs (default 300, at least 10).
    #[serde(default)]
    pub interval_seconds: Option<i64>,
    /// The largest share of the location's entities one sync may delete (0 to 1, default 0.9).
    #[serde(default)]
    pub deletion_threshold: Option<f64>,
}

/// What the last sync did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// `pending` (never synced), `ok` or `failed`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synced_at: Option<Millis>,
    /// The commit of the last successful sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub deleted: u64,
    /// Why the last attempt failed (nothing was changed by it), with the file and line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: LocationKind,
    pub target: String,
    pub branch: Option<String>,
    pub paths: Vec<String>,
    pub token_secret: Option<String>,
    pub webhook_secret: Option<String>,
    pub interval_seconds: i64,
    pub deletion_threshold: f64,
    pub status: SyncStatus,
    pub next_sync_at: Millis,
    pub created_at: Millis,
    pub created_by: String,
}

impl Location {
    /// The stored secrets it reads.
    pub fn secret_names(&self) -> Vec<&str> {
        self.token_secret.iter().chain(&self.webhook_secret).map(String::as_str).collect()
    }

    /// The catalog-as-code source its objects are recorded under.
    pub fn source(&self) -> String {
        source_of(&self.id)
    }
}

pub fn source_of(id: &str) -> String {
    format!("location:{id}")
}

impl LocationInput {
    /// Checks a registration and fills in the defaults.
    pub fn into_location(self, id: String, now: Millis, by: &str) -> Result<Location, FieldErrors> {
        let mut errors = FieldErrors::default();
        if self.target.trim().is_empty() || self.target.len() > 2_000 || self.target.chars().any(char::is_control) {
            errors.push("/target", "target must be a URL or path of 1 to 2000 printable characters");
        }
        if self.target.starts_with('-') {
            errors.push("/target", "target must not start with '-'");
        }
        if let Some(branch) = &self.branch
            && (branch.is_empty()
                || branch.starts_with('-')
                || branch.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            errors.push("/branch", "branch must be a branch name");
        }
        if self.kind == LocationKind::File && self.branch.is_some() {
            errors.push("/branch", "a file location has no branch");
        }
        for (i, path) in self.paths.iter().enumerate() {
            if path.is_empty() || path.starts_with('/') || path.split('/').any(|part| part == "..") {
                errors.push(format!("/paths/{i}"), "a path is a glob relative to the location, without '..'");
            }
        }
        let interval = self.interval_seconds.unwrap_or(300);
        if interval < 10 {
            errors.push("/intervalSeconds", "syncs are at least 10 seconds apart");
        }
        let threshold = self.deletion_threshold.unwrap_or(DEFAULT_DELETION_THRESHOLD);
        if !(0.0..=1.0).contains(&threshold) {
            errors.push("/deletionThreshold", "the deletion threshold is a share between 0 and 1");
        }
        let paths = match self.paths.is_empty() {
            true => DEFAULT_PATHS.iter().map(|p| p.to_string()).collect(),
            false => self.paths,
        };
        errors.into_result(Location {
            id,
            kind: self.kind,
            target: self.target,
            branch: self.branch,
            paths,
            token_secret: self.token_secret,
            webhook_secret: self.webhook_secret,
            interval_seconds: interval,
            deletion_threshold: threshold,
            status: SyncStatus { state: "pending".into(), ..SyncStatus::default() },
            next_sync_at: now,
            created_at: now,
            created_by: by.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_is_checked_and_completed() {
        let input = LocationInput {
            kind: LocationKind::Git,
            target: "https://git.example.com/acme/catalog.git".into(),
            branch: Some("main".into()),
            paths: Vec::new(),
            token_secret: None,
            webhook_secret: None,
            interval_seconds: None,
            deletion_threshold: None,
        };
        let location = input.clone().into_location("loc_1".into(), 5, "ann").expect("valid");
        assert_eq!(location.paths.len(), DEFAULT_PATHS.len());
        assert_eq!((location.interval_seconds, location.deletion_threshold), (300, 0.9));
        assert_eq!(location.source(), "location:loc_1");
        let bad = LocationInput {
            target: "--upload-pack=evil".into(),
            branch: Some("-x".into()),
            paths: vec!["../etc".into()],
            interval_seconds: Some(1),
            deletion_threshold: Some(2.0),
            ..input
        };
        let paths: Vec<String> =
            bad.into_location("x".into(), 0, "a").expect_err("invalid").0.into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["/target", "/branch", "/paths/0", "/intervalSeconds", "/deletionThreshold"]);
    }
}
