//! The audit log page.

use super::*;

// ---- the audit log ----

struct AuditRow {
    seq: i64,
    at: present::When,
    actor: String,
    origin: String,
    action: String,
    resource: String,
    /// The resource's page in the portal, when it has one.
    link: Option<String>,
    status: String,
    /// What changed: the fields' names, each field before and after (HTML), and the change as
    /// recorded (JSON).
    summary: String,
    changes: String,
    diff: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    signed_in: Option<SignedIn>,
    query: AuditQuery,
    records: Vec<AuditRow>,
    /// The link to the next (older) page, with the same filters.
    older: Option<String>,
    error: Option<String>,
}

/// The page's filters, as the form sends them: free text, and a time range as the browser's
/// `datetime-local` fields give it (read as UTC).
#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    resource_type: String,
    #[serde(default)]
    resource_id: String,
    #[serde(default)]
    blueprint: String,
    #[serde(default)]
    run: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    origin: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    cursor: Option<i64>,
}

/// A `datetime-local` value (`2026-11-27T09:30`), or a full RFC 3339 time, as milliseconds.
/// A time without a zone is UTC; the end of a range (`to`) takes in the whole minute or second
/// it names.
fn moment(field: &str, text: &str) -> Result<Option<i64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let (full, span) = match text.len() {
        16 => (format!("{text}:00Z"), 60_000),
        19 => (format!("{text}Z"), 1_000),
        _ => (text.to_string(), 1),
    };
    let at = portolan_model::blueprint::parse_date_time(&full)
        .ok_or_else(|| format!("'{field}': '{text}' is not a date and time"))?;
    Ok(Some(if field == "to" { at + span - 1 } else { at }))
}

impl AuditQuery {
    fn filter(&self) -> Result<portolan_store::AuditFilter, String> {
        let given = |v: &str| Some(v.trim().to_string()).filter(|s| !s.is_empty());
        let (from, to) = (moment("from", &self.from)?, moment("to", &self.to)?);
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err("the time range ends before it starts".into());
        }
        Ok(portolan_store::AuditFilter {
            resource_type: given(&self.resource_type),
            resource_id: given(&self.resource_id),
            blueprint: given(&self.blueprint),
            run: given(&self.run),
            actor: given(&self.actor),
            origin: given(&self.origin),
            action: given(&self.action),
            status: given(&self.status),
            from,
            to,
            before: self.cursor,
        })
    }

    fn older(&self, cursor: i64) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("resource_type", &self.resource_type),
            ("resource_id", &self.resource_id),
            ("blueprint", &self.blueprint),
            ("run", &self.run),
            ("actor", &self.actor),
            ("origin", &self.origin),
            ("action", &self.action),
            ("status", &self.status),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !value.is_empty() {
                query.append_pair(key, value);
            }
        }
        query.append_pair("cursor", &cursor.to_string());
        format!("/audit?{}", query.finish())
    }
}

pub(super) async fn audit_page(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    QueryParams(query): QueryParams<AuditQuery>,
) -> PageResult {
    let filter = match query.filter() {
        Ok(filter) => filter,
        Err(error) => {
            let page = AuditPage {
                signed_in: layout_user(&app, &signed_in).await,
                query,
                records: Vec::new(),
                older: None,
                error: Some(error),
            };
            return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
        }
    };
    let (records, next) = app.audit.audit_log(&signed_in.actor, filter, PAGE_SIZE).await?;
    let now = app.core.now();
    let records = records
        .into_iter()
        .map(|r| {
            let e = r.entry;
            let (on, link) = match (&e.blueprint, e.resource_type.as_str()) {
                (Some(b), "entity") => {
                    (format!("{b}/{}", e.resource_id), Some(format!("/catalog/{b}/{}", url_segment(&e.resource_id))))
                }
                (_, "run") => (format!("run {}", e.resource_id), Some(format!("/runs/{}", e.resource_id))),
                _ => (format!("{} {}", e.resource_type, e.resource_id), None),
            };
            let (summary, changes) = match &e.diff {
                Some(d) if d.get("truncated").is_some() => (
                    "Too large to keep".to_string(),
                    format!(r#"<p class="muted small">{} bytes; only its hash is kept.</p>"#, shown(&d["bytes"])),
                ),
                Some(d) => {
                    let changes = present::changes(d.get("before"), d.get("after"));
                    (present::changed_fields(&changes), present::changes_html(&changes))
                }
                None => (String::new(), String::new()),
            };
            AuditRow {
                seq: r.seq,
                at: present::When::new(e.at, now),
                actor: e.actor,
                origin: e.origin,
                action: e.action,
                resource: on,
                link,
                status: e.status,
                summary,
                changes,
                diff: e.diff.as_ref().map(raw_json).unwrap_or_default(),
                reason: e.reason.unwrap_or_default(),
            }
        })
        .collect();
    let older = next.map(|cursor| query.older(cursor));
    Ok(render(&AuditPage { signed_in: layout_user(&app, &signed_in).await, query, records, older, error: None }))
}
