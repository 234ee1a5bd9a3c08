//! The `local` provider (placeholder until implemented).

/// Runs nodes as local processes.
#[derive(Debug)]
pub struct LocalProvider;
