//! TEMPORARY compile stub; replaced by branch wt-provider.
#![allow(missing_docs, clippy::all)]
use super::*;
#[derive(Debug)]
pub struct LocalProvider;
impl LocalProvider { pub fn new(_d: std::path::PathBuf) -> LocalProvider { LocalProvider } }
#[async_trait::async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &'static str { "local" }
    async fn describe(&self, _p: &str) -> Result<Vec<ObservedNode>, ProviderError> { Ok(vec![]) }
    async fn launch(&self, r: &LaunchRequest) -> Result<ObservedNode, ProviderError> { Err(ProviderError::Config { node: r.name.clone(), detail: String::new() }) }
    async fn terminate(&self, _p: &str, _n: &str, _t: Option<&crate::model::NodeTemplate>) -> Result<(), ProviderError> { Ok(()) }
}
