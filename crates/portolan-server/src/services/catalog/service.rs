//! The catalog service and its collaborators.

use crate::services::computed::Computed;
use crate::services::core::Core;
use crate::services::permissions::Permissions;

/// Blueprints and entities (see `blueprints.rs` and `entities.rs`).
#[derive(Clone)]
pub struct Catalog {
    pub(super) core: Core,
    pub(super) permissions: Permissions,
    pub(super) computed: Computed,
}

impl Catalog {
    pub fn new(core: Core, permissions: Permissions, computed: Computed) -> Self {
        Self { core, permissions, computed }
    }
}
