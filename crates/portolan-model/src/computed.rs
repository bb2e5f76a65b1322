//! Computed properties: mirrors (a value read through relations) and aggregations (a statistic
//! over the entities that point here). This module resolves and checks their definitions; the
//! server computes the values and keeps them fresh.

use crate::blueprint::{AggregationFunction, AveragePeriod, Blueprint, CalculationBy, Format};
use crate::error::{FieldErrors, pointer_token};

/// Longest relation path a mirror follows.
pub const MAX_MIRROR_HOPS: usize = 5;

/// A mirror path resolved against the blueprints: each hop's relation and the blueprint it
/// reaches, then the field read there (`$title` and the like, or a property). Through a
/// many-relation the mirror is `many`: the list of the values of every entity reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorPath {
    pub hops: Vec<(String, String)>,
    pub field: String,
    pub many: bool,
}

/// Resolves `path` starting at `blueprint`.
pub fn resolve_mirror(
    blueprint: &Blueprint,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<Blueprint>,
) -> Result<MirrorPath, String> {
    let segments: Vec<&str> = path.split('.').collect();
    let Some((field, relations)) = segments.split_last() else { return Err("the path is empty".into()) };
    if relations.is_empty() {
        return Err("a mirror path starts with a relation, e.g. system.tier".into());
    }
    if relations.len() > MAX_MIRROR_HOPS {
        return Err(format!("a mirror path follows at most {MAX_MIRROR_HOPS} relations"));
    }
    let mut current = blueprint.clone();
    let mut hops = Vec::new();
    let mut many = false;
    for relation in relations {
        let def =
            current.relations.get(*relation).ok_or(format!("'{}' has no relation '{relation}'", current.identifier))?;
        many |= def.many;
        let target = def.target.clone();
        current = if target == blueprint.identifier {
            blueprint.clone()
        } else {
            lookup(&target).ok_or(format!("no blueprint '{target}'"))?
        };
        hops.push((relation.to_string(), target));
    }
    let known = field.starts_with('$') || current.schema.properties.contains_key(*field) || current.is_computed(field);
    if !known {
        return Err(format!("'{}' has no property '{field}'", current.identifier));
    }
    Ok(MirrorPath { hops, field: field.to_string(), many })
}

/// The relations of `target` through which its entities point at entities of `blueprint`.
pub fn aggregation_relations(blueprint: &str, target: &Blueprint, relation: Option<&str>) -> Vec<(String, bool)> {
    target
        .relations
        .iter()
        .filter(|(name, def)| def.target == blueprint && relation.is_none_or(|r| r == name.as_str()))
        .map(|(name, def)| (name.clone(), def.many))
        .collect()
}

/// Checks the computed property definitions of `blueprint`.
pub fn validate(blueprint: &Blueprint, lookup: &dyn Fn(&str) -> Option<Blueprint>) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    for (name, mirror) in &blueprint.mirror_properties {
        if let Err(msg) = resolve_mirror(blueprint, &mirror.path, lookup) {
            errors.push(format!("/mirrorProperties/{}/path", pointer_token(name)), msg);
        }
    }
    for (name, aggregation) in &blueprint.aggregation_properties {
        let path = format!("/aggregationProperties/{}", pointer_token(name));
        let target = if aggregation.target == blueprint.identifier {
            Some(blueprint.clone())
        } else {
            lookup(&aggregation.target)
        };
        let Some(target) = target else {
            errors.push(format!("{path}/target"), format!("no blueprint '{}'", aggregation.target));
            continue;
        };
        if aggregation_relations(&blueprint.identifier, &target, aggregation.relation.as_deref()).is_empty() {
            let how =
                aggregation.relation.as_deref().map(|r| format!("relation '{r}'")).unwrap_or("any relation".into());
            errors.push(
                format!("{path}/relation"),
                format!("'{}' does not point at '{}' through {how}", target.identifier, blueprint.identifier),
            );
        }
        let spec = &aggregation.calculation_spec;
        if spec.func != AggregationFunction::Average && (spec.average_of.is_some() || spec.measure_time_by.is_some()) {
            errors.push(format!("{path}/calculationSpec"), "averageOf and measureTimeBy go with func average");
        }
        if spec.period().is_some() {
            let by = spec.measure_time_by();
            let dated = matches!(by, "$createdAt" | "$updatedAt")
                || target.schema.properties.get(by).is_some_and(|p| p.format == Some(Format::DateTime));
            if !dated {
                errors.push(
                    format!("{path}/calculationSpec/measureTimeBy"),
                    format!(
                        "'{}' has no date-time property '{by}': use $createdAt, $updatedAt or one",
                        target.identifier
                    ),
                );
            }
        }
        match (spec.calculation_by, spec.func, &spec.property) {
            (CalculationBy::Entities, AggregationFunction::Count, None) => {}
            (CalculationBy::Entities, AggregationFunction::Average, None)
                if spec.average_of != Some(AveragePeriod::Total) => {}
            (CalculationBy::Entities, _, _) => {
                errors.push(
                    format!("{path}/calculationSpec"),
                    "calculationBy entities counts (func count) or averages per hour, day, week or month \
                     (func average with averageOf), with no property",
                );
            }
            (CalculationBy::Property, AggregationFunction::Count, _) | (CalculationBy::Property, _, None) => {
                errors.push(
                    format!("{path}/calculationSpec"),
                    "calculationBy property needs a number property and sum, average, min, max or median",
                );
            }
            (CalculationBy::Property, _, Some(property)) => {
                let is_number = target.schema.properties.get(property).is_some_and(|p| p.kind.is_numeric())
                    || target.aggregation_properties.contains_key(property);
                if !is_number {
                    errors.push(
                        format!("{path}/calculationSpec/property"),
                        format!("'{}' has no number property '{property}'", target.identifier),
                    );
                }
            }
        }
    }
    errors.into_result(())
}
