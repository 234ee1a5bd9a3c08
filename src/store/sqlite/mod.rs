//! SQLite backend of the [`Store`](super::Store) (placeholder until implemented).

/// The SQLite state store.
#[derive(Debug)]
pub struct SqliteStore;
