//! `Template` documents: a template of the gallery, installed. Each is replaced, before the plan,
//! by the objects it installs — its blueprints laid over the stored ones (and over those of the
//! templates before it in the same apply), its actions wired to the chosen backend, the entities
//! it needs when they are missing.

use std::collections::{BTreeMap, HashSet};

use portolan_model::gallery::{Expanded, Install, Template};
use portolan_model::manifest::{API_VERSION, Kind, ObjectKey};
use portolan_store::Tx;
use serde_json::{Value, json};

use super::{ApplyReport, ApplyRequest, Manifests, Problem, SourcedDocument};
use crate::error::Result;
use crate::services::Actor;
use crate::services::core::to_json;

/// An apply's documents with its templates expanded, and the objects not to record under the
/// source (blueprints a template extends, entities it seeds).
pub(super) struct Expansion {
    pub request: ApplyRequest,
    pub implied: HashSet<ObjectKey>,
}

/// The source the gallery's installs are recorded under (the portal's, the API's and the
/// demo's), so that installing again is idempotent and changes only what differs.
pub const GALLERY_SOURCE: &str = "gallery";

/// A template of the gallery and whether this catalog has it.
pub struct TemplateState {
    pub template: &'static Template,
    /// Every action of the template is stored.
    pub installed: bool,
    /// The backend its stored actions send their work to (`RUNNER`, `WEBHOOK`, …).
    pub backend: Option<String>,
}

impl Manifests {
    /// The gallery, each template with whether it is installed. Anyone signed in may look.
    pub async fn gallery(&self) -> Result<Vec<TemplateState>> {
        let stored: BTreeMap<String, Value> = {
            let mut tx = self.core.store().read().await?;
            tx.actions().await?.into_iter().map(|r| (r.action.identifier.clone(), to_json(&r.action))).collect()
        };
        Ok(crate::gallery::templates()?
            .iter()
            .map(|template| {
                let ids = template.actions.iter().filter_map(|a| a["identifier"].as_str());
                let installed = ids.clone().all(|id| stored.contains_key(id));
                let backend = template
                    .actions
                    .iter()
                    .filter(|a| a["invocationMethod"]["type"] == "BACKEND")
                    .find_map(|a| stored.get(a["identifier"].as_str()?)?["invocationMethod"]["type"].as_str())
                    .map(str::to_string);
                TemplateState { template, installed, backend }
            })
            .collect())
    }

    /// One template of the gallery with whether it is installed, or 404.
    pub async fn gallery_template(&self, identifier: &str) -> Result<TemplateState> {
        crate::gallery::template(identifier)?;
        self.gallery()
            .await?
            .into_iter()
            .find(|s| s.template.identifier == identifier)
            .ok_or_else(|| crate::error::Error::not_found(format!("template '{identifier}' in the gallery")))
    }

    /// Installs templates of the gallery (each with its backend and renames), as one apply of
    /// `Template` documents under [`GALLERY_SOURCE`]; never prunes.
    pub async fn install_templates(
        &self,
        actor: &Actor,
        installs: Vec<(String, Install)>,
        dry_run: bool,
    ) -> Result<ApplyReport> {
        let documents = installs
            .into_iter()
            .map(|(template, install)| {
                let mut spec = to_json(&install);
                spec["template"] = Value::from(template.clone());
                SourcedDocument {
                    file: format!("gallery/{template}"),
                    line: 1,
                    document: json!({"apiVersion": API_VERSION, "kind": "Template", "spec": spec}),
                }
            })
            .collect();
        let request =
            ApplyRequest { source: GALLERY_SOURCE.into(), documents, dry_run, prune: false, max_delete_share: None };
        self.apply(actor, request).await
    }

    pub(super) async fn expand_templates(
        &self,
        tx: &mut dyn Tx,
        request: ApplyRequest,
    ) -> Result<std::result::Result<Expansion, Vec<Problem>>> {
        // Backstage's software templates are `kind: Template` too, under their own apiVersion.
        let is_template = |d: &SourcedDocument| {
            d.document.get("kind").and_then(Value::as_str) == Some("Template")
                && d.document.get("apiVersion").and_then(Value::as_str) == Some(API_VERSION)
        };
        if !request.documents.iter().any(is_template) {
            return Ok(Ok(Expansion { request, implied: HashSet::new() }));
        }
        let gallery = crate::gallery::templates()?;
        let mut blueprints: BTreeMap<String, Value> = tx
            .blueprints()
            .await?
            .into_iter()
            .map(|r| (r.blueprint.identifier.clone(), to_json(&r.blueprint)))
            .collect();
        let stored_blueprints: HashSet<String> = blueprints.keys().cloned().collect();
        let mut problems = Vec::new();
        let mut documents = Vec::new();
        let mut implied = HashSet::new();
        // Blueprints go out once each, as the last template to touch them left them.
        let mut laid_over: BTreeMap<String, (SourcedDocument, Value)> = BTreeMap::new();
        let mut seen = HashSet::new();
        for (index, sourced) in request.documents.iter().enumerate() {
            if !is_template(sourced) {
                documents.push(sourced.clone());
                continue;
            }
            let problem = |path: &str, message: String| Problem::in_document(index, sourced, path, message);
            let manifest = match portolan_model::manifest::parse_document(&sourced.document) {
                Ok(manifest) => manifest,
                Err(errors) => {
                    problems.extend(errors.0.into_iter().map(|e| problem(&e.path, e.message)));
                    continue;
                }
            };
            let name = manifest.key.name.clone();
            let Some(template) = gallery.iter().find(|t| t.identifier == name) else {
                problems.push(problem(
                    "/spec/template",
                    format!("the gallery has no template '{name}' (GET /api/v1/gallery lists them)"),
                ));
                continue;
            };
            let mut spec = manifest.spec.clone();
            if let Value::Object(map) = &mut spec {
                map.remove("template");
            }
            let install: Install = match portolan_model::error::from_json(spec) {
                Ok(install) => install,
                Err(errors) => {
                    problems.extend(errors.0.into_iter().map(|e| problem(&format!("/spec{}", e.path), e.message)));
                    continue;
                }
            };
            let expanded = match portolan_model::gallery::expand(template, &install, |id| blueprints.get(id).cloned()) {
                Ok(expanded) => expanded,
                Err(errors) => {
                    problems.extend(errors.0.into_iter().map(|e| problem(&e.path, e.message)));
                    continue;
                }
            };
            let file = match sourced.file.starts_with("gallery/") {
                true => sourced.file.clone(),
                false => format!("{} (template {name})", sourced.file),
            };
            for Expanded { kind, spec, implied: not_recorded } in expanded {
                let key = match kind {
                    Kind::Entity => ObjectKey::new(
                        kind,
                        format!(
                            "{}/{}",
                            spec["blueprint"].as_str().unwrap_or(""),
                            spec["identifier"].as_str().unwrap_or("")
                        ),
                    ),
                    _ => ObjectKey::new(kind, spec["identifier"].as_str().unwrap_or_default()),
                };
                let document = SourcedDocument {
                    file: file.clone(),
                    line: sourced.line,
                    document: json!({"apiVersion": API_VERSION, "kind": kind.as_str(), "spec": spec}),
                };
                if not_recorded {
                    implied.insert(key.clone());
                }
                match kind {
                    Kind::Blueprint => {
                        blueprints.insert(key.name.clone(), spec.clone());
                        laid_over.insert(key.name.clone(), (document, spec));
                    }
                    // An entity a template needs is created when missing, never changed.
                    Kind::Entity => {
                        let target = key.entity_ref();
                        let stored = stored_blueprints.contains(&target.blueprint)
                            && !tx
                                .existing(&target.blueprint, std::slice::from_ref(&target.identifier))
                                .await?
                                .is_empty();
                        if !stored && seen.insert(key) {
                            documents.push(document);
                        }
                    }
                    _ => {
                        if seen.insert(key) {
                            documents.push(document);
                        }
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        let mut all: Vec<SourcedDocument> = laid_over
            .into_values()
            .map(|(mut document, spec)| {
                document.document["spec"] = spec;
                document
            })
            .collect();
        all.extend(documents);
        Ok(Ok(Expansion { request: ApplyRequest { documents: all, ..request }, implied }))
    }
}
