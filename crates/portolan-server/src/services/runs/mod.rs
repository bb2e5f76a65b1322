//! Runs of self-service actions and automations, from request to result. Each file is one part
//! of a run's life; every change of a run is written with its log line, change event, audit entry
//! and the automations it triggers in one transaction (see `services::runlog`).

pub mod automations;
pub mod delivery;
pub mod dispatch;
pub mod github;
pub mod gitlab;
pub mod reads;
pub mod render;
pub mod reports;
pub mod requests;
pub mod runners;
pub mod service;
pub mod timeouts;
pub mod writer;

pub use delivery::Delivery;
pub use reads::{DEFAULT_RUN_PAGE, MAX_RUN_PAGE};
pub use reports::{LogLine, MAX_LOG_LINES, RunReport};
pub use requests::{DryRun, RunRequest};
pub use runners::RunnerClaim;
pub use service::{Runs, RunsParts};
