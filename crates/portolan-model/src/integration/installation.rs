//! Installations: integrations that run elsewhere — Port's Ocean framework, or anything speaking
//! Port's integration API — and keep their record here: type, version, configuration (the mapping
//! the integration applies itself) and sync state. The entities one writes belong to its
//! datasource, the catalog-as-code source named by the `User-Agent` it writes with.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::Millis;
use crate::error::FieldErrors;
use crate::ident::check_schema_identifier;

/// Fields the server keeps itself: sent ones are ignored.
const SERVER_FIELDS: &[&str] = &[
    "installationId",
    "resyncState",
    "createdAt",
    "updatedAt",
    "createdBy",
    "updatedBy",
    "logAttributes",
    "metricAttributes",
];

/// The most examples kept per kind.
pub const MAX_EXAMPLES: usize = 10;

/// The most log lines kept.
pub const MAX_LOG_LINES: usize = 300;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Installation {
    /// Port's `installationId`.
    pub id: String,
    /// Everything else as the integration sent it: `installationAppType`, `version`, `config`,
    /// `changelogDestination`, `spec`, ...
    pub fields: Map<String, Value>,
    /// The last sync's state as the integration reported it (`status`, `lastResyncStart`, ...).
    pub resync_state: Option<Value>,
    /// Raw items the integration sent as examples of each kind, for writing its mapping.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub examples: Map<String, Value>,
    /// The integration's latest log lines (Ocean ships them to `logAttributes.ingestUrl`),
    /// oldest first, [`MAX_LOG_LINES`] at most.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<Value>,
    /// The latest sync metrics of each kind (Ocean's `syncKindMetrics`), by kind.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub sync_metrics: Map<String, Value>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub created_by: String,
    pub updated_by: String,
}

impl Installation {
    /// A new installation from Port's `POST /v1/integration` body.
    pub fn create(body: Value, by: &str, now: Millis) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::default();
        let Value::Object(mut fields) = body else {
            errors.push("", "must be an object");
            return Err(errors);
        };
        let id = match fields.remove("installationId") {
            Some(Value::String(id)) => {
                if let Err(message) = check_schema_identifier(&id) {
                    errors.push("/installationId", message);
                }
                id
            }
            Some(_) => {
                errors.push("/installationId", "must be a string");
                String::new()
            }
            None => {
                errors.push("/installationId", "is required");
                String::new()
            }
        };
        check_fields(&fields, &mut errors);
        let mut installation = Installation {
            id,
            fields: Map::new(),
            resync_state: None,
            examples: Map::new(),
            logs: Vec::new(),
            sync_metrics: Map::new(),
            created_at: now,
            updated_at: now,
            created_by: by.into(),
            updated_by: by.into(),
        };
        installation.merge(fields);
        errors.into_result(installation)
    }

    /// Port's `PATCH /v1/integration/{id}`: the fields sent replace those held, others stay.
    pub fn patch(&mut self, body: Value, by: &str, now: Millis) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::default();
        let Value::Object(fields) = body else {
            errors.push("", "must be an object");
            return Err(errors);
        };
        if let Some(id) = fields.get("installationId").filter(|id| id.as_str() != Some(self.id.as_str())) {
            errors.push("/installationId", format!("cannot change ({id} given, '{}' held)", self.id));
        }
        check_fields(&fields, &mut errors);
        errors.into_result(())?;
        self.merge(fields);
        self.touch(by, now);
        Ok(())
    }

    /// Port's `PATCH /v1/integration/{id}/resync-state`: the sync state replaces the last one.
    pub fn report_resync(&mut self, state: Value, by: &str, now: Millis) -> Result<(), FieldErrors> {
        if !state.is_object() {
            let mut errors = FieldErrors::default();
            errors.push("", "must be an object");
            return Err(errors);
        }
        self.resync_state = Some(state);
        self.touch(by, now);
        Ok(())
    }

    /// Port's `POST /v1/integration/{id}/kinds/{kind}/examples`: the kind's latest examples
    /// replace its earlier ones, [`MAX_EXAMPLES`] at most.
    pub fn keep_examples(&mut self, kind: &str, examples: Value) -> Result<(), FieldErrors> {
        let Value::Array(mut items) = examples else { return Err(malformed("/examples", "the kind's raw items")) };
        items.truncate(MAX_EXAMPLES);
        self.examples.insert(kind.into(), Value::Array(items));
        Ok(())
    }

    /// Ocean's log shipping (`{logs: [...]}`): the newest lines are kept.
    pub fn append_logs(&mut self, logs: Value) -> Result<(), FieldErrors> {
        let Value::Array(lines) = logs else { return Err(malformed("/logs", "log lines")) };
        self.logs.extend(lines);
        let over = self.logs.len().saturating_sub(MAX_LOG_LINES);
        self.logs.drain(..over);
        Ok(())
    }

    /// Ocean's sync metrics: one kind's (`syncKindMetrics`) or several (`syncKindsMetrics`),
    /// each replacing that kind's last.
    pub fn record_metrics(&mut self, metrics: Value) -> Result<(), FieldErrors> {
        let metrics = match metrics {
            Value::Array(metrics) => metrics,
            one => vec![one],
        };
        for (index, metric) in metrics.into_iter().enumerate() {
            let Some(kind) = metric.get("kindIdentifier").and_then(Value::as_str).map(str::to_string) else {
                return Err(malformed(&format!("/{index}/kindIdentifier"), "a kind's name"));
            };
            self.sync_metrics.insert(kind, metric);
        }
        Ok(())
    }

    /// The record in Port's shape. `updatedAt` is always present in `resyncState`: Ocean reads it.
    /// `public_url` is where Ocean ships its logs and metrics (`logAttributes`, `metricAttributes`).
    pub fn to_port(&self, public_url: &str) -> Value {
        let mut record = self.fields.clone();
        let own = format!("{}/v1/integration/{}", public_url.trim_end_matches('/'), self.id);
        record.insert("logAttributes".into(), json!({"ingestUrl": format!("{own}/logs")}));
        record.insert("metricAttributes".into(), json!({"ingestUrl": format!("{own}/metrics")}));
        record.insert("installationId".into(), json!(self.id));
        record.insert("identifier".into(), json!(self.id));
        record.entry("config").or_insert_with(|| json!({}));
        let mut resync = self.resync_state.clone().unwrap_or_else(|| json!({}));
        if let Value::Object(state) = &mut resync {
            state.entry("updatedAt").or_insert_with(|| json!(crate::format_millis(self.updated_at)));
        }
        record.insert("resyncState".into(), resync);
        record.insert("createdAt".into(), json!(crate::format_millis(self.created_at)));
        record.insert("updatedAt".into(), json!(crate::format_millis(self.updated_at)));
        record.insert("createdBy".into(), json!(self.created_by));
        record.insert("updatedBy".into(), json!(self.updated_by));
        Value::Object(record)
    }

    /// The integration's type (Port's `installationAppType`), when it gave one.
    pub fn app_type(&self) -> Option<&str> {
        self.fields.get("installationAppType").and_then(Value::as_str)
    }

    /// The integration's version, when it gave one.
    pub fn version(&self) -> Option<&str> {
        self.fields.get("version").and_then(Value::as_str)
    }

    fn merge(&mut self, fields: Map<String, Value>) {
        for (name, value) in fields {
            if !SERVER_FIELDS.contains(&name.as_str()) {
                self.fields.insert(name, value);
            }
        }
    }

    fn touch(&mut self, by: &str, now: Millis) {
        self.updated_at = now;
        self.updated_by = by.into();
    }
}

fn malformed(path: &str, what: &str) -> FieldErrors {
    let mut errors = FieldErrors::default();
    errors.push(path, format!("must be {what}"));
    errors
}

/// What one kind's last sync did, read from Ocean's metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct KindSync {
    pub kind: String,
    pub state: String,
    pub extracted: u64,
    pub filtered_out: u64,
    pub loaded: u64,
    pub failed: u64,
    pub seconds: f64,
}

impl Installation {
    /// Each mapped kind's last sync (Ocean's own `__runtime__`-style entries aside), in order.
    pub fn kind_syncs(&self) -> Vec<KindSync> {
        let mut syncs: Vec<(i64, KindSync)> = self
            .sync_metrics
            .values()
            .filter_map(|metric| {
                let kind = metric.get("kind")?.as_str().filter(|kind| !kind.starts_with("__"))?.to_string();
                let phase = &metric["metrics"]["phase"];
                let count = |pointer: &str| phase.pointer(pointer).and_then(Value::as_f64).unwrap_or(0.0) as u64;
                let sync = KindSync {
                    kind,
                    state: metric["syncState"].as_str().unwrap_or("unknown").to_string(),
                    extracted: count("/extract/object_count_type/raw_extracted/object_count"),
                    filtered_out: count("/transform/object_count_type/filtered_out/object_count"),
                    loaded: count("/load/object_count_type/loaded/object_count"),
                    failed: count("/transform/object_count_type/failed/object_count")
                        + count("/load/object_count_type/failed/object_count"),
                    seconds: phase.pointer("/resync/duration_seconds").and_then(Value::as_f64).unwrap_or(0.0),
                };
                Some((metric["kindIndex"].as_i64().unwrap_or(i64::MAX), sync))
            })
            .collect();
        syncs.sort_by_key(|(index, _)| *index);
        syncs.into_iter().map(|(_, sync)| sync).collect()
    }
}

/// The fields whose type the server relies on.
fn check_fields(fields: &Map<String, Value>, errors: &mut FieldErrors) {
    for name in ["installationAppType", "version"] {
        if fields.get(name).is_some_and(|v| !v.is_string() && !v.is_null()) {
            errors.push(format!("/{name}"), "must be a string");
        }
    }
    if fields.get("config").is_some_and(|v| !v.is_object()) {
        errors.push("/config", "must be an object (the integration's mapping)");
    }
}

/// The datasource a write comes from, read from its `User-Agent` as Ocean sends it:
/// `port-ocean/{type}/{version}/{installation}/{feature}`. Other clients have none.
pub fn datasource(user_agent: &str) -> Option<&str> {
    let mut parts = user_agent.split('/');
    let tagged = parts.next() == Some("port-ocean");
    let named = parts.by_ref().take(3).filter(|part| !part.is_empty()).count() == 3;
    (tagged && named).then_some(user_agent)
}

/// Whether a datasource belongs to a `datasource-entities` query (Port's prefix and suffix match).
pub fn datasource_matches(datasource: &str, prefix: &str, suffix: &str) -> bool {
    datasource.len() >= prefix.len() + suffix.len() && datasource.starts_with(prefix) && datasource.ends_with(suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created() -> Installation {
        Installation::create(
            json!({"installationId": "shipyard", "installationAppType": "shipyard", "version": "0.3.0",
                   "config": {}, "resyncState": {"status": "forged"}}),
            "ci",
            1_000,
        )
        .expect("accepted")
    }

    #[test]
    fn create_keeps_the_integration_fields_and_not_the_server_ones() {
        let installation = created();
        assert_eq!(installation.id, "shipyard");
        assert_eq!(installation.app_type(), Some("shipyard"));
        assert_eq!(installation.version(), Some("0.3.0"));
        assert!(installation.resync_state.is_none());
        assert!(!installation.fields.contains_key("resyncState"));
    }

    #[test]
    fn create_reports_every_bad_field_at_once() {
        let errors = Installation::create(json!({"installationId": "a b", "version": 3, "config": []}), "ci", 1)
            .expect_err("refused");
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/installationId", "/version", "/config"]);
    }

    #[test]
    fn patch_replaces_only_what_it_sends_and_cannot_rename() {
        let mut installation = created();
        installation.patch(json!({"version": "0.4.0", "spec": {"x": 1}}), "ocean", 2_000).expect("accepted");
        assert_eq!(installation.version(), Some("0.4.0"));
        assert_eq!(installation.app_type(), Some("shipyard"));
        assert_eq!(installation.updated_at, 2_000);
        assert_eq!(installation.updated_by, "ocean");
        let err = installation.patch(json!({"installationId": "other"}), "ocean", 3_000).expect_err("refused");
        assert_eq!(err.0[0].path, "/installationId");
        assert_eq!(installation.updated_at, 2_000);
    }

    #[test]
    fn port_shape_always_carries_resync_updated_at_and_a_config() {
        let mut installation = created();
        let record = installation.to_port("http://portal.test/");
        assert_eq!(record["logAttributes"]["ingestUrl"], "http://portal.test/v1/integration/shipyard/logs");
        assert_eq!(record["installationId"], "shipyard");
        assert_eq!(record["config"], json!({}));
        assert!(record["resyncState"]["updatedAt"].is_string());
        installation.report_resync(json!({"status": "completed"}), "ocean", 5_000).expect("accepted");
        assert_eq!(installation.to_port("")["resyncState"]["status"], "completed");
        assert!(installation.report_resync(json!("done"), "ocean", 6_000).is_err());
    }

    #[test]
    fn examples_are_kept_per_kind_and_capped() {
        let mut installation = created();
        let many: Vec<Value> = (0..25).map(|n| json!({"n": n})).collect();
        installation.keep_examples("service", Value::Array(many)).expect("accepted");
        assert_eq!(installation.examples["service"].as_array().expect("accepted").len(), MAX_EXAMPLES);
        assert!(installation.keep_examples("squad", json!({"n": 1})).is_err());
        assert!(installation.to_port("").get("examples").is_none());
    }

    #[test]
    fn logs_keep_the_newest_lines_and_metrics_the_latest_per_kind() {
        let mut installation = created();
        let lines: Vec<Value> = (0..MAX_LOG_LINES + 5).map(|n| json!({"message": n})).collect();
        installation.append_logs(Value::Array(lines)).expect("accepted");
        assert_eq!(installation.logs.len(), MAX_LOG_LINES);
        assert_eq!(installation.logs[0]["message"], 5);
        installation.record_metrics(json!({"kindIdentifier": "service-1", "n": 1})).expect("accepted");
        installation.record_metrics(json!([{"kindIdentifier": "service-1", "n": 2}])).expect("accepted");
        assert_eq!(installation.sync_metrics["service-1"]["n"], 2);
        assert_eq!(installation.record_metrics(json!([{"n": 3}])).expect_err("refused").0[0].path, "/0/kindIdentifier");
    }

    #[test]
    fn kind_syncs_read_oceans_metrics_in_mapping_order() {
        let mut installation = created();
        let metric = |kind: &str, index: i64, loaded: f64| {
            json!({"kindIdentifier": format!("{kind}-{index}"), "kind": kind, "kindIndex": index, "syncState": "completed",
                   "metrics": {"phase": {"resync": {"duration_seconds": 0.5},
                       "extract": {"object_count_type": {"raw_extracted": {"object_count": 4.0}}},
                       "transform": {"object_count_type": {"filtered_out": {"object_count": 1.0}, "failed": {"object_count": 0.0}}},
                       "load": {"object_count_type": {"loaded": {"object_count": loaded}, "failed": {"object_count": 1.0}}}}}})
        };
        let runtime = json!({"kindIdentifier": "__runtime__", "syncState": "completed"});
        installation
            .record_metrics(json!([metric("service", 1, 2.0), runtime, metric("squad", 0, 3.0)]))
            .expect("accepted");
        let syncs = installation.kind_syncs();
        assert_eq!(syncs.iter().map(|s| s.kind.as_str()).collect::<Vec<_>>(), ["squad", "service"]);
        assert_eq!((syncs[1].extracted, syncs[1].filtered_out, syncs[1].loaded, syncs[1].failed), (4, 1, 2, 1));
    }

    #[test]
    fn datasource_is_read_from_ocean_user_agents_only() {
        assert_eq!(
            datasource("port-ocean/shipyard/0.3.0/ship/exporter"),
            Some("port-ocean/shipyard/0.3.0/ship/exporter")
        );
        assert_eq!(datasource("port-ocean/shipyard/0.3.0/ship"), Some("port-ocean/shipyard/0.3.0/ship"));
        assert_eq!(datasource("port-ocean/shipyard//ship"), None);
        assert_eq!(datasource("curl/8.5.0"), None);
        assert!(datasource_matches(
            "port-ocean/shipyard/0.3.0/ship/exporter",
            "port-ocean/shipyard/",
            "/ship/exporter"
        ));
        assert!(!datasource_matches(
            "port-ocean/shipyard/0.3.0/other/exporter",
            "port-ocean/shipyard/",
            "/ship/exporter"
        ));
        assert!(!datasource_matches("port-ocean/x", "port-ocean/x", "x"));
    }
}
