//! Backstage's descriptor format (`catalog-info.yaml`) in and out: each kind Backstage ships maps
//! to a blueprint of a ready set (Group and User to teams and users), entity references to
//! relations and owning teams, and metadata to properties, so that an entity goes back out as
//! the descriptor it came from.

use serde_json::{Map, Value, json};

use super::{Kind, Manifest, ObjectKey};
use crate::error::FieldErrors;
use crate::system::{TEAM, USER};
use crate::{Blueprint, Entity, EntityRef};

/// Each Backstage kind and the blueprint its entities go to.
pub const KINDS: [(&str, &str); 9] = [
    ("Component", "backstage-component"),
    ("API", "backstage-api"),
    ("Resource", "backstage-resource"),
    ("System", "backstage-system"),
    ("Domain", "backstage-domain"),
    ("Location", "backstage-location"),
    ("Template", "backstage-template"),
    ("Group", TEAM),
    ("User", USER),
];

/// A reference field of a spec: where it goes, and the kind a reference without one means.
struct RefField {
    field: &'static str,
    /// The relation (or `$team` for owning teams) for targets of each kind.
    via: &'static [(&'static str, &'static str)],
    default_kind: Option<&'static str>,
    many: bool,
}

const fn one(field: &'static str, kind: &'static str, via: &'static [(&'static str, &'static str)]) -> RefField {
    RefField { field, via, default_kind: Some(kind), many: false }
}

const fn many(
    field: &'static str,
    kind: Option<&'static str>,
    via: &'static [(&'static str, &'static str)],
) -> RefField {
    RefField { field, via, default_kind: kind, many: true }
}

const DEPENDS_ON: RefField = many("dependsOn", None, &[("component", "dependsOn"), ("resource", "dependsOnResources")]);
const DEPENDENCY_OF: RefField =
    many("dependencyOf", None, &[("component", "dependencyOf"), ("resource", "dependencyOfResources")]);
const SYSTEM: RefField = one("system", "system", &[("system", "system")]);
const OWNER: RefField = one("owner", "group", &[("group", "$team")]);

const COMPONENT: [RefField; 7] = [
    OWNER,
    SYSTEM,
    one("subcomponentOf", "component", &[("component", "subcomponentOf")]),
    many("providesApis", Some("api"), &[("api", "providesApis")]),
    many("consumesApis", Some("api"), &[("api", "consumesApis")]),
    DEPENDS_ON,
    DEPENDENCY_OF,
];
const API: [RefField; 2] = [OWNER, SYSTEM];
const RESOURCE: [RefField; 4] = [OWNER, SYSTEM, DEPENDS_ON, DEPENDENCY_OF];
const SYSTEM_KIND: [RefField; 2] = [OWNER, one("domain", "domain", &[("domain", "domain")])];
const DOMAIN: [RefField; 2] = [OWNER, one("subdomainOf", "domain", &[("domain", "subdomainOf")])];
const TEMPLATE: [RefField; 1] = [OWNER];
const GROUP: [RefField; 3] = [
    one("parent", "group", &[("group", "parent")]),
    many("children", Some("group"), &[("group", "children")]),
    many("members", Some("user"), &[("user", "members")]),
];
const USER_KIND: [RefField; 1] = [many("memberOf", Some("group"), &[("group", "$team")])];

fn ref_fields(kind: &str) -> &'static [RefField] {
    match kind {
        "Component" => &COMPONENT,
        "API" => &API,
        "Resource" => &RESOURCE,
        "System" => &SYSTEM_KIND,
        "Domain" => &DOMAIN,
        "Template" => &TEMPLATE,
        "Group" => &GROUP,
        "User" => &USER_KIND,
        _ => &[],
    }
}

/// The blueprint of a Backstage kind (`component`, `group`, ...; case-insensitive).
pub fn blueprint_of_kind(kind: &str) -> Option<&'static str> {
    KINDS.iter().find(|(k, _)| k.eq_ignore_ascii_case(kind)).map(|(_, b)| *b)
}

/// The Backstage kind a ready blueprint holds.
pub fn kind_of_blueprint(blueprint: &str) -> Option<&'static str> {
    KINDS.iter().find(|(_, b)| *b == blueprint).map(|(k, _)| *k)
}

/// Whether a document is a Backstage descriptor.
pub fn is_descriptor(document: &Value) -> bool {
    document.get("apiVersion").and_then(Value::as_str).is_some_and(|v| v.starts_with("backstage.io/"))
}

/// A parsed entity reference: `[kind:][namespace/]name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackstageRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl BackstageRef {
    /// Reads a reference as Backstage does: kind and namespace default from the field and the
    /// referring entity; kinds compare case-insensitively.
    pub fn parse(text: &str, default_kind: Option<&str>, default_namespace: &str) -> Result<Self, String> {
        let (kind, rest) = match text.split_once(':') {
            Some((kind, rest)) => (Some(kind), rest),
            None => (None, text),
        };
        let (namespace, name) = match rest.split_once('/') {
            Some((namespace, name)) => (namespace, name),
            None => (default_namespace, rest),
        };
        let Some(kind) = kind.or(default_kind) else {
            return Err(format!("'{text}' names no kind, and this field has no default: write kind:name"));
        };
        if name.is_empty() || namespace.is_empty() || kind.is_empty() {
            return Err(format!("'{text}' is not an entity reference ([kind:][namespace/]name)"));
        }
        check_name(name).and(check_namespace(namespace)).map_err(|why| format!("'{text}' names no entity: {why}"))?;
        Ok(Self { kind: kind.to_ascii_lowercase(), namespace: namespace.to_string(), name: name.to_string() })
    }

    /// The Portolan entity this names.
    pub fn entity(&self) -> Option<EntityRef> {
        Some(EntityRef {
            blueprint: blueprint_of_kind(&self.kind)?.to_string(),
            identifier: identifier(&self.namespace, &self.name),
        })
    }
}

impl std::fmt::Display for BackstageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}/{}", self.kind, self.namespace, self.name)
    }
}

/// Backstage's rule for `metadata.name`: 1 to 63 letters, digits, `-`, `_` and `.`, starting
/// and ending with a letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    let inner = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let ends =
        name.starts_with(|c: char| c.is_ascii_alphanumeric()) && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    match (1..=63).contains(&name.len()) && ends && name.chars().all(inner) {
        true => Ok(()),
        false => Err(format!(
            "the name '{name}' is not a Backstage name: 1 to 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        )),
    }
}

/// Backstage's rule for `metadata.namespace`: a DNS label (1 to 63 lowercase letters, digits
/// and inner `-`).
pub fn check_namespace(namespace: &str) -> Result<(), String> {
    let label = namespace
        .split('-')
        .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    match (1..=63).contains(&namespace.len()) && label {
        true => Ok(()),
        false => Err(format!(
            "the namespace '{namespace}' is not a Backstage namespace: 1 to 63 lowercase letters, digits and inner '-'"
        )),
    }
}

/// The identifier of a Backstage entity: its name, prefixed by its namespace unless `default`.
pub fn identifier(namespace: &str, name: &str) -> String {
    if namespace.eq_ignore_ascii_case("default") { name.to_string() } else { format!("{namespace}:{name}") }
}

/// One reference of a translated entity: where it went in the entity and what the file wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// The relation, or `$team`.
    pub via: String,
    pub target: EntityRef,
    pub text: String,
}

/// A descriptor turned into an entity document, with its references.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    pub manifest: Manifest,
    pub links: Vec<Link>,
}

/// Turns a descriptor into an Entity document of the ready blueprints. Problems are reported by
/// pointer into the descriptor.
pub fn translate(document: &Value) -> Result<Translated, FieldErrors> {
    let mut errors = FieldErrors::default();
    let kind_text = document.get("kind").and_then(Value::as_str).unwrap_or_default();
    let Some((kind, blueprint)) = KINDS.iter().find(|(k, _)| k.eq_ignore_ascii_case(kind_text)).copied() else {
        let known = KINDS.map(|(k, _)| k).join(", ");
        errors.push("/kind", format!("unknown Backstage kind '{kind_text}': expected one of {known}"));
        return Err(errors);
    };
    let metadata = document.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    let name = match metadata.get("name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => {
            errors.push("/metadata/name", "metadata.name is required");
            String::new()
        }
    };
    if let Err(why) = check_name(&name)
        && !name.is_empty()
    {
        errors.push("/metadata/name", why);
    }
    let namespace = match metadata.get("namespace") {
        None | Some(Value::Null) => "default".to_string(),
        Some(Value::String(namespace)) => match check_namespace(namespace) {
            Ok(()) => namespace.clone(),
            // The references that default to it are read in `default`: one error, not one each.
            Err(why) => {
                errors.push("/metadata/namespace", why);
                "default".to_string()
            }
        },
        Some(_) => {
            errors.push("/metadata/namespace", "metadata.namespace must be a string");
            "default".to_string()
        }
    };
    let spec = match document.get("spec") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(spec)) => spec.clone(),
        Some(_) => {
            errors.push("/spec", "spec must be an object");
            Map::new()
        }
    };

    let mut properties = Map::new();
    let mut relations = Map::new();
    let mut team: Vec<String> = Vec::new();
    let mut links = Vec::new();
    properties.insert("namespace".into(), json!(namespace));
    properties.insert("apiVersion".into(), document.get("apiVersion").cloned().unwrap_or(Value::Null));
    for (field, pointer) in [
        ("description", "description"),
        ("tags", "tags"),
        ("labels", "labels"),
        ("annotations", "annotations"),
        ("links", "links"),
    ] {
        if let Some(value) = metadata.get(field).filter(|v| !v.is_null()) {
            properties.insert(pointer.into(), value.clone());
        }
    }
    for field in ["type", "lifecycle"] {
        if let Some(Value::String(value)) = spec.get(field) {
            properties.insert(field.into(), json!(value));
        }
    }
    if let Some(Value::Array(warnings)) = document.get("warnings") {
        properties.insert("warnings".into(), Value::Array(warnings.clone()));
    }

    let mut rest = spec.clone();
    for field in ref_fields(kind) {
        let Some(value) = rest.remove(field.field) else { continue };
        let texts: Vec<(String, String)> = match (&value, field.many) {
            (Value::String(text), false) => vec![(format!("/spec/{}", field.field), text.clone())],
            (Value::Array(items), true) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let at = format!("/spec/{}/{i}", field.field);
                    match item.as_str() {
                        Some(text) => Some((at, text.to_string())),
                        None => {
                            errors.push(at, "an entity reference must be a string");
                            None
                        }
                    }
                })
                .collect(),
            (Value::Null, _) => Vec::new(),
            _ => {
                let shape = if field.many { "a list of entity references" } else { "an entity reference (a string)" };
                errors.push(format!("/spec/{}", field.field), format!("{} must be {shape}", field.field));
                Vec::new()
            }
        };
        if field.field == "owner" {
            properties.insert("owner".into(), value.clone());
        }
        for (at, text) in texts {
            let parsed = match BackstageRef::parse(&text, field.default_kind, &namespace) {
                Ok(parsed) => parsed,
                Err(message) => {
                    errors.push(at, message);
                    continue;
                }
            };
            // An owner that is a user (not a group) stays in `owner` only.
            let Some((_, via)) = field.via.iter().find(|(k, _)| *k == parsed.kind) else {
                if field.field != "owner" {
                    let kinds = field.via.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(" or ");
                    errors.push(at, format!("'{text}' is a {}; {} takes {kinds}", parsed.kind, field.field));
                }
                continue;
            };
            let Some(target) = parsed.entity() else { continue };
            if *via == "$team" {
                if !team.contains(&target.identifier) {
                    team.push(target.identifier.clone());
                }
            } else if field.many {
                let list = relations.entry(*via).or_insert_with(|| json!([]));
                if let Value::Array(items) = list
                    && !items.contains(&json!(target.identifier))
                {
                    items.push(json!(target.identifier));
                }
            } else {
                relations.insert((*via).into(), json!(target.identifier));
            }
            links.push(Link { via: (*via).to_string(), target, text });
        }
    }
    match kind {
        "User" => {
            let profile = spec.get("profile").cloned().unwrap_or(Value::Null);
            if let Some(email) = profile.get("email").filter(|v| v.is_string()) {
                properties.insert("email".into(), email.clone());
            }
            if let Some(full) = profile.get("displayName").filter(|v| v.is_string()) {
                properties.insert("fullName".into(), full.clone());
            }
        }
        "Location" => {
            rest.remove("type");
        }
        _ => {}
    }
    rest.remove("lifecycle");
    if kind != "Location" {
        rest.remove("type");
    }
    if !rest.is_empty() {
        properties.insert("spec".into(), Value::Object(rest));
    }
    let title = metadata.get("title").and_then(Value::as_str).map(str::to_string).or_else(|| {
        (kind == "Group")
            .then(|| spec.get("profile").and_then(|p| p.get("displayName")).and_then(Value::as_str).map(str::to_string))
            .flatten()
    });
    let identifier = identifier(&namespace, &name);
    let mut entity = json!({
        "blueprint": blueprint, "identifier": identifier, "properties": properties, "relations": relations,
    });
    if let Some(title) = title {
        entity["title"] = json!(title);
    }
    if !team.is_empty() {
        entity["team"] = json!(team);
    }
    errors.into_result(Translated {
        manifest: Manifest { key: ObjectKey::new(Kind::Entity, format!("{blueprint}/{identifier}")), spec: entity },
        links,
    })
}

/// The entity as a Backstage descriptor, references written back from its relations and teams
/// (with those that did not resolve), metadata from its properties.
pub fn to_descriptor(entity: &Entity) -> Option<Value> {
    let kind = kind_of_blueprint(&entity.blueprint)?;
    let p = &entity.properties;
    let namespace = p.get("namespace").and_then(Value::as_str).unwrap_or("default");
    let name = match entity.identifier.split_once(':') {
        Some((prefix, name)) if prefix == namespace => name,
        _ => entity.identifier.as_str(),
    };
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(name));
    metadata.insert("namespace".into(), json!(namespace));
    if let Some(title) = &entity.title
        && kind != "Group"
    {
        metadata.insert("title".into(), json!(title));
    }
    for field in ["description", "tags", "labels", "annotations", "links"] {
        if let Some(value) = p.get(field).filter(|v| !v.is_null()) {
            metadata.insert(field.into(), value.clone());
        }
    }
    let mut spec = p.get("spec").and_then(Value::as_object).cloned().unwrap_or_default();
    for field in ["type", "lifecycle"] {
        if let Some(value) = p.get(field).filter(|v| !v.is_null()) {
            spec.insert(field.into(), value.clone());
        }
    }
    let unresolved = p.get("unresolved").and_then(Value::as_object);
    for field in ref_fields(kind) {
        let mut refs: Vec<Value> = Vec::new();
        for (target_kind, via) in field.via {
            let targets: Vec<String> = match *via {
                "$team" if field.field == "owner" => Vec::new(),
                "$team" => entity.team.clone(),
                via => match entity.relations.get(via) {
                    Some(Value::String(id)) => vec![id.clone()],
                    Some(Value::Array(ids)) => ids.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
                    _ => Vec::new(),
                },
            };
            for id in targets {
                let (ns, name) = id.split_once(':').unwrap_or(("default", id.as_str()));
                refs.push(json!(format!("{target_kind}:{ns}/{name}")));
            }
            if let Some(Value::Array(texts)) = unresolved.and_then(|u| u.get(*via)) {
                refs.extend(texts.iter().cloned());
            }
        }
        if field.field == "owner" {
            if let Some(owner) = p.get("owner").filter(|v| !v.is_null()) {
                spec.insert("owner".into(), owner.clone());
            }
        } else if field.many && !refs.is_empty() {
            spec.insert(field.field.into(), Value::Array(refs));
        } else if let Some(first) = refs.into_iter().next() {
            spec.insert(field.field.into(), first);
        }
    }
    if kind == "User" {
        let mut profile = Map::new();
        for (from, to) in [("email", "email"), ("fullName", "displayName")] {
            if let Some(value) = p.get(from).filter(|v| !v.is_null()) {
                profile.insert(to.into(), value.clone());
            }
        }
        if !profile.is_empty() {
            spec.insert("profile".into(), Value::Object(profile));
        }
    }
    if kind == "Group" && !spec.contains_key("children") {
        spec.insert("children".into(), json!([]));
    }
    let api_version = p.get("apiVersion").and_then(Value::as_str).unwrap_or("backstage.io/v1alpha1");
    Some(json!({"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": spec}))
}

/// The ready blueprints for Backstage's kinds, and the properties and relations teams and users
/// get so that groups and users keep what their descriptors say.
pub fn blueprints(team: &Blueprint, user: &Blueprint) -> Vec<Blueprint> {
    let common = json!({
        "namespace": {"type": "string", "title": "Namespace"},
        "description": {"type": "string", "title": "Description"},
        "type": {"type": "string", "title": "Type", "facet": true},
        "lifecycle": {"type": "string", "title": "Lifecycle", "facet": true},
        "owner": {"type": "string", "title": "Owner (as written)"},
        "tags": {"type": "array", "title": "Tags", "items": {"type": "string"}},
        "labels": {"type": "object", "title": "Labels"},
        "annotations": {"type": "object", "title": "Annotations"},
        "links": {"type": "array", "title": "Links", "items": {"type": "object"}},
        "apiVersion": {"type": "string", "title": "Descriptor apiVersion"},
        "spec": {"type": "object", "title": "Rest of the descriptor's spec"},
        "unresolved": {"type": "object", "title": "References not in the catalog (yet)"},
        "warnings": {"type": "array", "title": "Import warnings", "items": {"type": "string"}}
    });
    let rel = |target: &str, many: bool| json!({"target": target, "many": many});
    let depends = json!({
        "dependsOn": rel("backstage-component", true), "dependsOnResources": rel("backstage-resource", true),
        "dependencyOf": rel("backstage-component", true), "dependencyOfResources": rel("backstage-resource", true),
        "system": rel("backstage-system", false)
    });
    let mut component_relations = depends.clone();
    if let Value::Object(map) = &mut component_relations {
        map.insert("subcomponentOf".into(), rel("backstage-component", false));
        map.insert("providesApis".into(), rel("backstage-api", true));
        map.insert("consumesApis".into(), rel("backstage-api", true));
    }
    let ready = [
        ("backstage-component", "Component", "Software: a service, website, library...", component_relations),
        (
            "backstage-api",
            "API",
            "An interface a component provides or consumes.",
            json!({"system": rel("backstage-system", false)}),
        ),
        ("backstage-resource", "Resource", "Infrastructure a component needs at run time.", depends),
        (
            "backstage-system",
            "System",
            "A set of components, APIs and resources with one purpose.",
            json!({"domain": rel("backstage-domain", false)}),
        ),
        (
            "backstage-domain",
            "Domain",
            "A business area that groups systems.",
            json!({"subdomainOf": rel("backstage-domain", false)}),
        ),
        ("backstage-location", "Location", "A pointer to more descriptor files.", json!({})),
        (
            "backstage-template",
            "Template",
            "A Backstage software template; in Portolan, scaffolding runs through actions.",
            json!({}),
        ),
    ];
    let mut out: Vec<Blueprint> = ready
        .into_iter()
        .filter_map(|(identifier, title, description, relations)| {
            Blueprint::from_json(json!({
                "identifier": identifier, "title": title, "description": description,
                "schema": {"properties": common}, "relations": relations
            }))
            .ok()
        })
        .collect();
    let extend = |system: &Blueprint, relations: Value| {
        let mut document = serde_json::to_value(system).ok()?;
        let properties = document.pointer_mut("/schema/properties")?.as_object_mut()?;
        for (name, schema) in common.as_object()? {
            properties.entry(name.clone()).or_insert_with(|| schema.clone());
        }
        let existing = document.get_mut("relations")?.as_object_mut()?;
        for (name, relation) in relations.as_object()? {
            existing.entry(name.clone()).or_insert_with(|| relation.clone());
        }
        Blueprint::from_json(document).ok()
    };
    out.extend(extend(
        team,
        json!({"parent": rel(TEAM, false), "children": rel(TEAM, true), "members": rel(USER, true)}),
    ));
    out.extend(extend(user, json!({})));
    out
}

/// Replaces Backstage's `$text`, `$json` and `$yaml` placeholders in a descriptor with what
/// `read` gives for their target (read relative to the descriptor's file by the caller). One
/// that cannot be read leaves its field empty; the messages are returned as warnings.
pub fn substitute(document: &mut Value, read: &mut dyn FnMut(&str, &str) -> Result<Value, String>) -> Vec<String> {
    let mut warnings = Vec::new();
    walk(document, String::new(), read, &mut warnings);
    warnings
}

fn walk(
    value: &mut Value,
    at: String,
    read: &mut dyn FnMut(&str, &str) -> Result<Value, String>,
    warnings: &mut Vec<String>,
) {
    match value {
        Value::Object(map) if map.len() == 1 => {
            let (key, target) = map.iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap_or_default();
            if let ("$text" | "$json" | "$yaml", Value::String(target)) = (key.as_str(), &target) {
                *value = read(&key, target).unwrap_or_else(|message| {
                    warnings.push(format!("{at}: {key} {target}: {message}"));
                    Value::Null
                });
            } else if let Some(inner) = map.get_mut(&key) {
                walk(inner, format!("{at}/{}", crate::error::pointer_token(&key)), read, warnings);
            }
        }
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                walk(inner, format!("{at}/{}", crate::error::pointer_token(key)), read, warnings);
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter_mut().enumerate() {
                walk(inner, format!("{at}/{i}"), read, warnings);
            }
        }
        _ => {}
    }
}

/// A Location's targets: `spec.target` and `spec.targets`.
pub fn location_targets(document: &Value) -> Vec<String> {
    let spec = &document["spec"];
    let mut targets: Vec<String> = spec["target"].as_str().map(str::to_string).into_iter().collect();
    targets.extend(spec["targets"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_string)));
    targets
}

/// The Backstage relation type of a relation (or `$team`) of a Backstage blueprint's entity, and
/// the type its target sees.
pub fn relation_types(blueprint: &str, via: &str) -> Option<(&'static str, &'static str)> {
    Some(match via {
        "$team" if blueprint == USER => ("memberOf", "hasMember"),
        "$team" => ("ownedBy", "ownerOf"),
        "system" | "subcomponentOf" | "domain" | "subdomainOf" => ("partOf", "hasPart"),
        "providesApis" => ("providesApi", "apiProvidedBy"),
        "consumesApis" => ("consumesApi", "apiConsumedBy"),
        "dependsOn" | "dependsOnResources" => ("dependsOn", "dependencyOf"),
        "dependencyOf" | "dependencyOfResources" => ("dependencyOf", "dependsOn"),
        "parent" => ("childOf", "parentOf"),
        "children" => ("parentOf", "childOf"),
        "members" => ("hasMember", "memberOf"),
        _ => return None,
    })
}

/// The Backstage reference (`component:default/cart`) of an entity of a Backstage blueprint.
pub fn reference_of(target: &EntityRef) -> Option<String> {
    let kind = kind_of_blueprint(&target.blueprint)?.to_ascii_lowercase();
    let (namespace, name) = target.identifier.split_once(':').unwrap_or(("default", target.identifier.as_str()));
    Some(format!("{kind}:{namespace}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component() -> Value {
        json!({
            "apiVersion": "backstage.io/v1alpha1", "kind": "Component",
            "metadata": {"name": "cart", "title": "Cart", "description": "Carts", "tags": ["java"],
                         "annotations": {"github.com/project-slug": "acme/cart"}},
            "spec": {"type": "service", "lifecycle": "production", "owner": "team-a", "system": "shop",
                     "providesApis": ["cart-api"], "dependsOn": ["resource:default/db", "component:pay"]}
        })
    }

    #[test]
    fn references_become_relations_and_owners_teams() {
        let translated = translate(&component()).expect("valid");
        let spec = &translated.manifest.spec;
        assert_eq!(translated.manifest.key.to_string(), "Entity backstage-component/cart");
        assert_eq!(spec["team"], json!(["team-a"]));
        assert_eq!(spec["relations"]["system"], "shop");
        assert_eq!(spec["relations"]["providesApis"], json!(["cart-api"]));
        assert_eq!(spec["relations"]["dependsOn"], json!(["pay"]));
        assert_eq!(spec["relations"]["dependsOnResources"], json!(["db"]));
        assert_eq!(spec["properties"]["annotations"]["github.com/project-slug"], "acme/cart");
        let texts: Vec<&str> = translated.links.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["team-a", "shop", "cart-api", "resource:default/db", "component:pay"]);
    }

    #[test]
    fn a_descriptor_goes_back_out_as_it_came_in() {
        let translated = translate(&component()).expect("valid");
        let spec = &translated.manifest.spec;
        let entity = Entity {
            identifier: "cart".into(),
            title: spec["title"].as_str().map(str::to_string),
            icon: None,
            blueprint: "backstage-component".into(),
            team: vec!["team-a".into()],
            properties: spec["properties"].as_object().cloned().unwrap_or_default(),
            relations: spec["relations"].as_object().cloned().unwrap_or_default(),
            scorecards: Map::new(),
            diagnostics: Map::new(),
            version: 1,
            created_at: 0,
            created_by: String::new(),
            updated_at: 0,
            updated_by: String::new(),
        };
        let back = to_descriptor(&entity).expect("a Backstage kind");
        assert_eq!(back["kind"], "Component");
        assert_eq!(back["metadata"]["name"], "cart");
        assert_eq!(back["spec"]["owner"], "team-a");
        assert_eq!(back["spec"]["system"], "system:default/shop");
        assert_eq!(back["spec"]["dependsOn"], json!(["component:default/pay", "resource:default/db"]));
        assert_eq!(translate(&back).expect("valid again").manifest.spec["relations"], spec["relations"]);
    }

    #[test]
    fn bad_references_are_named_by_pointer() {
        let mut document = component();
        document["spec"]["dependsOn"] = json!(["pay", 7]);
        document["spec"]["system"] = json!(["shop"]);
        let errors = translate(&document).expect_err("invalid");
        let mut paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        paths.sort();
        assert_eq!(paths, ["/spec/dependsOn/0", "/spec/dependsOn/1", "/spec/system"]);
        let unknown =
            translate(&json!({"apiVersion": "backstage.io/v1alpha1", "kind": "Widget", "metadata": {"name": "x"}}));
        assert_eq!(unknown.expect_err("unknown kind").0[0].path, "/kind");
    }

    #[test]
    fn names_and_namespaces_follow_backstage_s_rules() {
        // Found by fuzzing: a name Backstage refuses made an identifier Portolan refuses.
        for (name, namespace, path) in [
            ("commerce ice", "default", "/metadata/name"),
            ("-cart", "default", "/metadata/name"),
            ("cart.", "default", "/metadata/name"),
            (&"c".repeat(64), "default", "/metadata/name"),
            ("cart", "Shop", "/metadata/namespace"),
            ("cart", "shop-", "/metadata/namespace"),
        ] {
            let mut document = component();
            document["metadata"]["name"] = json!(name);
            document["metadata"]["namespace"] = json!(namespace);
            let errors = translate(&document).expect_err(name);
            assert_eq!(errors.0.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), [path], "{name} {namespace}");
        }
        let mut document = component();
        document["metadata"]["name"] = json!("Cart_v2.api");
        document["metadata"]["namespace"] = json!("shop-2");
        assert!(translate(&document).is_ok());
        document["spec"]["system"] = json!("system:shop/bad name");
        assert_eq!(translate(&document).expect_err("a bad reference").0[0].path, "/spec/system");
    }

    #[test]
    fn the_ready_blueprints_are_valid() {
        let system = crate::system::blueprints();
        let all = blueprints(&system[0], &system[1]);
        assert_eq!(all.len(), 9);
        let exists = |id: &str| all.iter().any(|b| b.identifier == id);
        for blueprint in &all {
            assert_eq!(blueprint.validate(exists), Ok(()), "{}", blueprint.identifier);
        }
        assert_eq!(crate::system::check_system_change(&all[7]), Ok(()));
    }

    #[test]
    fn placeholders_are_read_and_a_missing_one_is_a_warning() {
        let mut document =
            json!({"spec": {"definition": {"$text": "./openapi.yaml"}, "other": {"$json": "./gone.json"}}});
        let warnings = substitute(&mut document, &mut |kind, target| match target {
            "./openapi.yaml" if kind == "$text" => Ok(json!("openapi: 3.0.0")),
            _ => Err("no such file".into()),
        });
        assert_eq!(document["spec"]["definition"], "openapi: 3.0.0");
        assert_eq!(document["spec"]["other"], Value::Null);
        assert_eq!(warnings, ["/spec/other: $json ./gone.json: no such file"]);
    }
}
