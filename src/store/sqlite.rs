//! TEMPORARY compile stub; replaced by branch wt-store.
#![allow(missing_docs, clippy::all)]
use super::*;
#[derive(Debug)]
pub struct SqliteStore;
impl SqliteStore {
    pub fn open(_p: &std::path::Path) -> Result<SqliteStore> { Ok(SqliteStore) }
    pub fn path(&self) -> &std::path::Path { std::path::Path::new("") }
}
impl Store for SqliteStore {
    fn snapshot(&self) -> Result<Snapshot> { Err(StoreError::NoSuchLock(String::new())) }
    fn commit(&mut self, _m: &[Mutation]) -> Result<u64> { Ok(0) }
    fn lock(&mut self, _r: &LockRequest) -> Result<LockInfo> { Err(StoreError::NoSuchLock(String::new())) }
    fn renew(&mut self, id: &str, _t: std::time::Duration) -> Result<LockInfo> { Err(StoreError::NoSuchLock(id.into())) }
    fn unlock(&mut self, _id: &str) -> Result<()> { Ok(()) }
    fn force_unlock(&mut self, id: &str) -> Result<LockInfo> { Err(StoreError::NoSuchLock(id.into())) }
    fn current_lock(&self) -> Result<Option<LockInfo>> { Ok(None) }
}
