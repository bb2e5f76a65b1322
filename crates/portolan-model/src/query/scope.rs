//! What a query runs over: the searched blueprints, and the shape of each field they have.

use crate::Millis;
use crate::blueprint::{Blueprint, Format, PropertySchema, PropertyType};

use super::*;

/// What a query needs from outside itself.
#[derive(Debug, Clone, Default)]
pub struct QueryContext {
    pub now: Millis,
    /// The caller's `_user` identifier, if known.
    pub user: Option<String>,
    /// The caller's teams.
    pub user_teams: Vec<String>,
}

/// The blueprints a query runs over, and every blueprint (for `relatedTo`).
pub struct Scope<'a> {
    pub searched: Vec<&'a Blueprint>,
    pub all: &'a [Blueprint],
    /// Scorecards of the searched blueprints, for `scorecard` rules.
    pub scorecards: Vec<&'a crate::scorecard_definition::Scorecard>,
}

impl<'a> Scope<'a> {
    /// One blueprint, or all of them when `blueprint` is `None`.
    pub fn new(all: &'a [Blueprint], blueprint: Option<&str>) -> Self {
        let searched = all.iter().filter(|b| blueprint.is_none_or(|id| b.identifier == id)).collect();
        Scope { searched, all, scorecards: Vec::new() }
    }

    /// Resolves a field name as rules and sorts write it: `$meta`, a property, or (`relation`) a relation.
    pub fn target(&self, name: &str, relation: bool) -> Result<Target, String> {
        if relation {
            let mut shape = None;
            for bp in &self.searched {
                if let Some(def) = bp.relations.get(name) {
                    let this = if def.many { Shape::Many(Kind::String) } else { Shape::One(Kind::String) };
                    merge_shape(&mut shape, this, name)?;
                }
            }
            let shape = shape.ok_or_else(|| format!("no searched blueprint has a relation '{name}'"))?;
            return Ok(Target { field: Field::Relation(name.to_string()), shape });
        }
        if name.starts_with('$') {
            let (meta, shape) = meta_field(name).ok_or_else(|| format!("unknown meta-property '{name}'"))?;
            return Ok(Target { field: Field::Meta(meta), shape });
        }
        let mut shape = None;
        for bp in &self.searched {
            if let Some(this) = self.property_shape_in(bp, name, 0) {
                merge_shape(&mut shape, this, name)?;
            }
        }
        let shape = shape.ok_or_else(|| format!("no searched blueprint has a property '{name}'"))?;
        Ok(Target { field: Field::Property(name.to_string()), shape })
    }
}

impl Scope<'_> {
    /// The shape of a stored or computed property of `bp`.
    fn property_shape_in(&self, bp: &Blueprint, name: &str, depth: usize) -> Option<Shape> {
        if let Some(prop) = bp.schema.properties.get(name) {
            return Some(property_shape(prop));
        }
        if bp.aggregation_properties.contains_key(name) {
            return Some(Shape::One(Kind::Number));
        }
        if let Some(calculation) = bp.calculation_properties.get(name) {
            let kind = match (calculation.kind, calculation.format) {
                (PropertyType::String, Some(Format::DateTime | Format::Timer)) => Kind::DateTime,
                (PropertyType::String, _) => Kind::String,
                (PropertyType::Number | PropertyType::Integer, _) => Kind::Number,
                (PropertyType::Boolean, _) => Kind::Boolean,
                _ => return Some(Shape::Object),
            };
            return Some(Shape::One(kind));
        }
        let mirror = bp.mirror_properties.get(name)?;
        if depth > crate::computed::MAX_MIRROR_HOPS {
            return None;
        }
        let lookup = |id: &str| self.all.iter().find(|b| b.identifier == id).cloned();
        let path = crate::computed::resolve_mirror(bp, &mirror.path, &lookup).ok()?;
        let last = path.hops.last().and_then(|(_, target)| lookup(target))?;
        let shape = if path.field.starts_with('$') {
            self.target(&path.field, false).ok().map(|t| match t.shape {
                Shape::One(Kind::Timestamp) => Shape::One(Kind::Number),
                other => other,
            })
        } else {
            self.property_shape_in(&last, &path.field, depth + 1)
        }?;
        // Through a many-relation, the values of every entity reached, as one list.
        Some(match shape {
            Shape::One(kind) if path.many => Shape::Many(kind),
            other => other,
        })
    }
}

/// A meta-property (`$identifier`, `$title`, ...) and the shape of its values.
pub fn meta_field(name: &str) -> Option<(Meta, Shape)> {
    Some(match name.strip_prefix('$')? {
        "identifier" => (Meta::Identifier, Shape::One(Kind::String)),
        "title" => (Meta::Title, Shape::One(Kind::String)),
        "team" => (Meta::Team, Shape::Many(Kind::String)),
        "blueprint" => (Meta::Blueprint, Shape::One(Kind::String)),
        "createdAt" => (Meta::CreatedAt, Shape::One(Kind::Timestamp)),
        "updatedAt" => (Meta::UpdatedAt, Shape::One(Kind::Timestamp)),
        "createdBy" => (Meta::CreatedBy, Shape::One(Kind::String)),
        "updatedBy" => (Meta::UpdatedBy, Shape::One(Kind::String)),
        "datasource" => (Meta::Datasource, Shape::One(Kind::String)),
        _ => return None,
    })
}

fn merge_shape(found: &mut Option<Shape>, this: Shape, name: &str) -> Result<(), String> {
    match found {
        Some(existing) if *existing != this => {
            Err(format!("'{name}' has different types in the searched blueprints; search one blueprint"))
        }
        _ => {
            *found = Some(this);
            Ok(())
        }
    }
}

/// The shape a property's values have in queries.
pub fn property_shape(prop: &PropertySchema) -> Shape {
    let kind = |p: &PropertySchema| match (p.kind, p.format) {
        (PropertyType::String, Some(Format::DateTime | Format::Timer)) => Some(Kind::DateTime),
        (PropertyType::String, _) => Some(Kind::String),
        // Integers are numbers to the query language: compared, sorted and summed as numbers.
        (PropertyType::Number | PropertyType::Integer, _) => Some(Kind::Number),
        (PropertyType::Boolean, _) => Some(Kind::Boolean),
        _ => None,
    };
    match prop.kind {
        PropertyType::Array => match prop.items.as_deref().and_then(kind) {
            Some(k) => Shape::Many(k),
            None => Shape::Object,
        },
        _ => kind(prop).map(Shape::One).unwrap_or(Shape::Object),
    }
}

impl Shape {
    pub fn kind(self) -> Option<Kind> {
        match self {
            Shape::One(k) | Shape::Many(k) => Some(k),
            Shape::Object => None,
        }
    }
}
