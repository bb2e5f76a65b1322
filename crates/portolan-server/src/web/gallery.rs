//! The gallery's pages: every template by area, and one template with its preview and install
//! form (admins install; everyone may look).

use portolan_model::gallery::{Backend, Install, Template as GalleryTemplate};

use super::*;
use crate::services::manifests::{Op, TemplateState};

struct Row {
    template: &'static GalleryTemplate,
    installed: bool,
    backend: String,
}

impl From<TemplateState> for Row {
    fn from(state: TemplateState) -> Self {
        Row { template: state.template, installed: state.installed, backend: state.backend.unwrap_or_default() }
    }
}

struct Area {
    name: String,
    rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "gallery.html")]
struct GalleryPage {
    signed_in: Option<SignedIn>,
    areas: Vec<Area>,
    installed: usize,
    total: usize,
}

pub(super) async fn gallery_page(State(app): State<AppState>, Visitor(signed_in): Visitor) -> PageResult {
    let states = app.manifests.gallery().await?;
    let total = states.len();
    let installed = states.iter().filter(|s| s.installed).count();
    let mut areas: Vec<Area> = Vec::new();
    for state in states {
        let row = Row::from(state);
        match areas.iter_mut().find(|a| a.name == row.template.area) {
            Some(area) => area.rows.push(row),
            None => areas.push(Area { name: row.template.area.clone(), rows: vec![row] }),
        }
    }
    let page = GalleryPage { signed_in: layout_user(&app, &signed_in).await, areas, installed, total };
    Ok(render(&page))
}

/// One line of a preview: what the install does to one object.
struct PreviewLine {
    op: &'static str,
    kind: &'static str,
    name: String,
    detail: String,
}

#[derive(Default, Deserialize)]
pub(super) struct InstallForm {
    csrf: String,
    /// `preview` or `install`.
    intent: String,
    backend: String,
    #[serde(default)]
    labels: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    org: String,
    #[serde(default)]
    repo: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    project: String,
    /// `from=to`, one per line.
    #[serde(default)]
    renames: String,
}

#[derive(Template)]
#[template(path = "gallery_template.html")]
struct TemplatePage {
    signed_in: Option<SignedIn>,
    csrf: String,
    row: Row,
    /// What each blueprint holds, in words.
    blueprints: Vec<(String, String)>,
    actions: Vec<(String, String, String)>,
    form: InstallForm,
    preview: Vec<PreviewLine>,
    installed_now: bool,
    problems: Vec<String>,
}

async fn template_page(
    app: &AppState,
    signed_in: &SessionActor,
    identifier: &str,
    form: InstallForm,
    outcome: std::result::Result<Vec<PreviewLine>, Vec<String>>,
    installed_now: bool,
) -> PageResult {
    let row = Row::from(app.manifests.gallery_template(identifier).await?);
    let blueprints = row
        .template
        .blueprints
        .iter()
        .map(|b| {
            let mut parts: Vec<String> =
                b["schema"]["properties"].as_object().into_iter().flatten().map(|(k, _)| k.clone()).collect();
            parts.extend(
                b["relations"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, r)| format!("{k} → {}", r["target"].as_str().unwrap_or(""))),
            );
            (b["identifier"].as_str().unwrap_or_default().to_string(), parts.join(", "))
        })
        .collect();
    let actions = row
        .template
        .actions
        .iter()
        .map(|a| {
            let inputs: Vec<String> = a["trigger"]["userInputs"]["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone())
                .collect();
            let when = match a["trigger"]["type"].as_str() {
                Some("automation") => format!("automation on {}", a["trigger"]["event"]["type"].as_str().unwrap_or("")),
                _ => a["trigger"]["operation"].as_str().unwrap_or("").to_string(),
            };
            (a["identifier"].as_str().unwrap_or_default().to_string(), when, inputs.join(", "))
        })
        .collect();
    let (preview, problems) = match outcome {
        Ok(lines) => (lines, Vec::new()),
        Err(problems) => (Vec::new(), problems),
    };
    let page = TemplatePage {
        signed_in: layout_user(app, signed_in).await,
        csrf: signed_in.session.csrf.clone(),
        row,
        blueprints,
        actions,
        form,
        preview,
        installed_now,
        problems,
    };
    Ok(render(&page))
}

pub(super) async fn gallery_template(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    PathParams(identifier): PathParams<String>,
) -> PageResult {
    let form =
        InstallForm { backend: "RUNNER".into(), labels: crate::demo::RUNNER_LABEL.into(), ..InstallForm::default() };
    template_page(&app, &signed_in, &identifier, form, Ok(Vec::new()), false).await
}

/// Previews or installs (the form's `intent`), and shows the same page with what it did.
pub(super) async fn install(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    PathParams(identifier): PathParams<String>,
    Form(form): Form<InstallForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    crate::gallery::template(&identifier)?;
    let dry_run = form.intent != "install";
    let outcome = match install_of(&form) {
        Err(message) => Err(vec![message]),
        Ok(install) => {
            match app.manifests.install_templates(&signed_in.actor, vec![(identifier.clone(), install)], dry_run).await
            {
                Ok(report) => Ok(report
                    .changes
                    .into_iter()
                    .map(|c| PreviewLine {
                        op: match c.op {
                            Op::Create => "create",
                            Op::Update => "update",
                            Op::Unchanged => "unchanged",
                            Op::Delete => "delete",
                        },
                        kind: c.kind.as_str(),
                        detail: c.diff.iter().map(|d| d.pointer.clone()).collect::<Vec<_>>().join(", "),
                        name: c.name,
                    })
                    .collect()),
                Err(err) if err.details.is_empty() => Err(vec![err.message]),
                Err(err) => {
                    Err(err.details.iter().map(|d| d["message"].as_str().unwrap_or_default().to_string()).collect())
                }
            }
        }
    };
    let installed_now = !dry_run && outcome.is_ok();
    template_page(&app, &signed_in, &identifier, form, outcome, installed_now).await
}

/// The install the form describes.
fn install_of(form: &InstallForm) -> std::result::Result<Install, String> {
    let field = |value: &str, name: &str| match value.trim() {
        "" => Err(format!("{name} is required for this backend")),
        value => Ok(value.to_string()),
    };
    let backend = match form.backend.as_str() {
        "RUNNER" => Backend::Runner {
            labels: form.labels.split(',').map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect(),
        },
        "WEBHOOK" => Backend::Webhook { url: field(&form.url, "The webhook URL")? },
        "GITHUB" => {
            Backend::Github { org: field(&form.org, "The organisation")?, repo: field(&form.repo, "The repository")? }
        }
        "GITLAB" => Backend::Gitlab {
            group_name: field(&form.group, "The group")?,
            project_name: field(&form.project, "The project")?,
        },
        other => return Err(format!("'{other}' is not a backend: RUNNER, WEBHOOK, GITHUB or GITLAB")),
    };
    let mut renames = std::collections::BTreeMap::new();
    for line in form.renames.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (from, to) = line.split_once('=').ok_or_else(|| format!("'{line}' is not from=to"))?;
        renames.insert(from.trim().to_string(), to.trim().to_string());
    }
    Ok(Install { backend, renames })
}
