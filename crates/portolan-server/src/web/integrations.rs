//! The test-mapping page: a mapping and a sample payload in, the entities (or each problem, by
//! the mapping's JSON pointer) out. Nothing is written.

use portolan_model::manifest::read_documents;

use super::*;

/// What the page starts with: GitHub's `repository` event mapped to services.
const EXAMPLE_MAPPING: &str = r#"resources:
  - kind: repository
    selector:
      query: .item.archived | not
    port:
      itemsToParse: .repositories
      entity:
        mappings:
          identifier: .item.name
          title: .item.full_name
          blueprint: '"service"'
          properties:
            language: .item.language
            repository: .item.html_url
"#;

const EXAMPLE_PAYLOAD: &str = r#"{
  "action": "created",
  "repositories": [
    {"name": "cart-service", "full_name": "acme/cart-service", "html_url": "https://github.com/acme/cart-service", "language": "Rust", "archived": false},
    {"name": "legacy", "full_name": "acme/legacy", "html_url": "https://github.com/acme/legacy", "language": "Perl", "archived": false},
    {"name": "attic", "full_name": "acme/attic", "html_url": "https://github.com/acme/attic", "language": "Go", "archived": true}
  ]
}"#;

struct ItemRow {
    label: String,
    entity: String,
    problems: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "test_mapping.html")]
struct TestMappingPage {
    signed_in: Option<SignedIn>,
    csrf: String,
    mapping: String,
    payload: String,
    /// Why the mapping or the payload could not be read, by pointer.
    errors: Vec<(String, String)>,
    items: Option<Vec<ItemRow>>,
}

#[derive(serde::Deserialize)]
pub(super) struct TestMappingForm {
    csrf: String,
    mapping: String,
    payload: String,
}

pub(super) async fn test_mapping_page(State(app): State<AppState>, Visitor(signed_in): Visitor) -> PageResult {
    let page = TestMappingPage {
        signed_in: layout_user(&app, &signed_in).await,
        csrf: signed_in.session.csrf.clone(),
        mapping: EXAMPLE_MAPPING.into(),
        payload: EXAMPLE_PAYLOAD.into(),
        errors: Vec::new(),
        items: None,
    };
    Ok(render(&page))
}

pub(super) async fn run_test_mapping(
    State(app): State<AppState>,
    Visitor(signed_in): Visitor,
    headers: HeaderMap,
    Form(form): Form<TestMappingForm>,
) -> PageResult {
    check_form(&headers, &signed_in, &form.csrf)?;
    let mut errors = Vec::new();
    let mut items = None;
    match (read_one(&form.mapping, "/mapping"), read_one(&form.payload, "/payload")) {
        (Ok(mapping), Ok(payload)) => match app.integrations.test_mapping(&signed_in.actor, mapping, &payload).await {
            Ok(preview) => {
                let rows = preview
                    .items
                    .into_iter()
                    .map(|i| ItemRow {
                        label: format!(
                            "{} #{} ({})",
                            i.kind,
                            i.item,
                            serde_json::to_string(&i.operation).unwrap_or_default().trim_matches('"')
                        ),
                        entity: i
                            .entity
                            .map(|e| serde_json::to_string_pretty(&e).unwrap_or_default())
                            .unwrap_or_default(),
                        problems: i.problems.into_iter().map(|p| (p.path, p.message)).collect(),
                    })
                    .collect();
                items = Some(rows);
            }
            Err(err) if err.details.is_empty() => errors.push((String::new(), err.message)),
            Err(err) => errors.extend(err.details.iter().map(|d| {
                (
                    d["path"].as_str().unwrap_or_default().to_string(),
                    d["message"].as_str().unwrap_or_default().to_string(),
                )
            })),
        },
        (mapping, payload) => errors.extend(mapping.err().into_iter().chain(payload.err())),
    }
    let page = TestMappingPage {
        signed_in: layout_user(&app, &signed_in).await,
        csrf: signed_in.session.csrf.clone(),
        mapping: form.mapping,
        payload: form.payload,
        errors,
        items,
    };
    Ok(render(&page))
}

/// One YAML or JSON document from a text box.
fn read_one(text: &str, field: &str) -> std::result::Result<serde_json::Value, (String, String)> {
    match read_documents(text) {
        Ok(mut documents) if documents.len() == 1 => Ok(documents.remove(0).value),
        Ok(documents) => Err((field.into(), format!("holds {} documents; give one", documents.len()))),
        Err(err) => Err((field.into(), format!("line {}: {}", err.line, err.message))),
    }
}
