//! Integrations: data brought in from where it lives (webhooks pushed in, sources pulled on a
//! schedule), turned into entities by one mapping language.

pub mod mapping;
