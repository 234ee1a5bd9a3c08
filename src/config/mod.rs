//! Loading the config repository (in progress).

pub mod diag;
mod explain;
pub mod schema;
pub mod yaml;
