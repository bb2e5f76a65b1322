//! Catalog files: any text is read as YAML documents or refused with a line; every Backstage
//! descriptor among them translates to an entity document or is refused with located errors,
//! and the identifier, relations and teams a translation builds are ones its ready blueprint accepts.

use portolan_model::entity::EntityInput;
use portolan_model::manifest::{backstage, parse_document, read_documents};
use portolan_model::system;

pub fn check(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let Ok(documents) = read_documents(source) else { return };
    let system = system::blueprints();
    let find = |id: &str| system.iter().find(|b| b.identifier == id).expect("a system blueprint");
    let blueprints = backstage::blueprints(find(system::TEAM), find(system::USER));
    for document in documents {
        if !backstage::is_descriptor(&document.value) {
            if let Err(errors) = parse_document(&document.value) {
                for error in &errors.0 {
                    document.line_of(&error.path);
                }
            }
            continue;
        }
        backstage::location_targets(&document.value);
        match backstage::translate(&document.value) {
            Ok(translated) => {
                let entity = translated.manifest.spec;
                let blueprint = blueprints
                    .iter()
                    .find(|b| entity["blueprint"] == b.identifier.as_str())
                    .expect("a descriptor translates into a ready blueprint");
                let input =
                    EntityInput::from_json(entity.clone()).expect("a translated descriptor is an entity document");
                // A value copied as written may break its property's format (an e-mail that is
                // not one): the apply refuses it by path. What translation builds must hold.
                if let Err(errors) = input.validate(blueprint) {
                    let built = errors.0.iter().find(|e| !e.path.starts_with("/properties/"));
                    assert!(built.is_none(), "translation builds an invalid entity: {errors:?}\n{entity:#}");
                }
            }
            Err(errors) => {
                assert!(!errors.0.is_empty(), "a refusal names at least one problem");
                for error in &errors.0 {
                    document.line_of(&error.path);
                }
            }
        }
    }
}
