//! Integrations: data brought in from where it lives (webhooks pushed in, sources pulled on a
//! schedule), turned into entities by one mapping language.

pub mod definition;
pub mod event;
pub mod installation;
pub mod mapping;
pub mod security;
pub mod vendor;

pub use definition::{Integration, IntegrationInput, IntegrationKind, IntegrationStatus, Pagination, RestSource};
pub use event::{EventItem, EventState, IntegrationEvent};
pub use installation::Installation;
pub use security::Security;
pub use vendor::{Vendor, VendorSource};
