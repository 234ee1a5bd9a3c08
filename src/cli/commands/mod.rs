//! One file per command: an `Args` struct and a `run` that turns arguments
//! into options and calls the library.

pub mod apply;
pub mod approve;
pub mod collect;
pub mod daemon;
pub mod exec;
pub mod import;
pub mod init;
pub mod plan;
pub mod query;
pub mod remote;
pub mod run;
pub mod scale;
pub mod schema;
pub mod state;
pub mod status;
pub mod survey;
pub mod test;
pub mod trace;
pub mod validate;
