//! The gallery's templates: every self-service action of the product brief, ready to install
//! (`gallery/*.yaml` in this crate, one file per area). What a template is, and how installing
//! it lays its blueprints over the catalog, is `portolan_model::gallery`.

use std::sync::OnceLock;

use portolan_model::gallery::Template;

use crate::error::{Error, ErrorCode, Result};

const AREAS: [(&str, &str); 8] = [
    ("sdlc.yaml", include_str!("../gallery/sdlc.yaml")),
    ("environments.yaml", include_str!("../gallery/environments.yaml")),
    ("cloud.yaml", include_str!("../gallery/cloud.yaml")),
    ("sre.yaml", include_str!("../gallery/sre.yaml")),
    ("data.yaml", include_str!("../gallery/data.yaml")),
    ("backoffice.yaml", include_str!("../gallery/backoffice.yaml")),
    ("ml.yaml", include_str!("../gallery/ml.yaml")),
    ("operations.yaml", include_str!("../gallery/operations.yaml")),
];

/// Every template, in the gallery's order.
pub fn templates() -> Result<&'static [Template]> {
    static TEMPLATES: OnceLock<std::result::Result<Vec<Template>, String>> = OnceLock::new();
    TEMPLATES
        .get_or_init(read)
        .as_deref()
        .map_err(|message| Error::new(ErrorCode::Internal, format!("the gallery is malformed: {message}")))
}

pub fn template(identifier: &str) -> Result<&'static Template> {
    templates()?
        .iter()
        .find(|t| t.identifier == identifier)
        .ok_or_else(|| Error::not_found(format!("template '{identifier}' in the gallery")))
}

fn read() -> std::result::Result<Vec<Template>, String> {
    let mut templates = Vec::new();
    for (file, text) in AREAS {
        let documents = portolan_model::manifest::read_documents(text).map_err(|e| format!("{file}: {}", e.message))?;
        for document in documents {
            let template: Template = portolan_model::error::from_json(document.value).map_err(|errors| {
                let first = errors.0.first().map(|e| format!("{} {}", e.path, e.message)).unwrap_or_default();
                format!("{file} line {}: {first}", document.line)
            })?;
            templates.push(template);
        }
    }
    Ok(templates)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_reads_and_has_its_readme_section() {
        let templates = super::templates().expect("the gallery reads");
        let readme = include_str!("../../../README.md");
        for template in templates {
            assert!(
                readme.contains(&format!("#### {}\n", template.title)),
                "README has no section for {}",
                template.title
            );
            assert!(!template.guardrails.is_empty() && !template.wires_to.is_empty(), "{}", template.identifier);
        }
    }
}
