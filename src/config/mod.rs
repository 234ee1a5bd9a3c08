//! Loading the config repository (placeholder during development).

pub mod diag;
pub mod yaml;
