//! Caller directories: the embedded store ([`sqlite::SqliteDirectory`]), a
//! CRM over HTTP ([`http::HttpDirectory`]), a [`Chain`] of them, and the
//! [`Directories`] router that picks the one the call's route names.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::warn;

use super::{Account, BoxFut, Directory, LookupQuery, ServiceError};
use crate::config::{DirectoryConfig, SQLITE};
use crate::store::AccountStore;

pub mod http;
pub mod sqlite;

/// Directories in order; the first that finds the number wins. A member
/// that fails is logged and skipped; the chain fails only when none found
/// the number and at least one failed (a miss everywhere is `not found`).
pub struct Chain {
    members: Vec<(String, Arc<dyn Directory>)>,
}

impl Chain {
    /// A chain over `members` (name, directory), asked in this order.
    pub fn new(members: Vec<(String, Arc<dyn Directory>)>) -> Chain {
        Chain { members }
    }
}

impl Directory for Chain {
    fn lookup<'a>(
        &'a self,
        query: &'a LookupQuery,
    ) -> BoxFut<'a, Result<Option<Account>, ServiceError>> {
        Box::pin(async move {
            let mut failure = None;
            for (name, d) in &self.members {
                match d.lookup(query).await {
                    Ok(Some(a)) => return Ok(Some(a)),
                    Ok(None) => {}
                    Err(e) => {
                        warn!(directory = %name, error = %e, "directory failed; asking the next in the chain");
                        failure = Some(ServiceError::Failed(format!("{name}: {e}")));
                    }
                }
            }
            match failure {
                Some(e) => Err(e),
                None => Ok(None),
            }
        })
    }
}

/// Every configured directory by name, and the default: what `serve` gives
/// the `lookup_caller` steps. A query names its route's directory or none.
pub struct Directories {
    by_name: BTreeMap<String, Arc<dyn Directory>>,
    default: String,
}

/// Why the configured directories could not be built.
#[derive(Debug, thiserror::Error)]
#[error("directories.{name}: {reason}")]
pub struct BuildError {
    /// The directory's name.
    pub name: String,
    /// What is wrong (a missing environment variable, a bad URL).
    pub reason: String,
}

impl Directories {
    /// Build every directory of the config over `store` (the `sqlite` one).
    /// Names were checked when the config loaded (chains have no loops).
    pub fn build(
        configs: &BTreeMap<String, DirectoryConfig>,
        default: &str,
        store: Arc<dyn AccountStore>,
        country: crate::phone::Country,
    ) -> Result<Directories, BuildError> {
        let mut by_name: BTreeMap<String, Arc<dyn Directory>> = BTreeMap::new();
        by_name.insert(
            SQLITE.to_string(),
            Arc::new(sqlite::SqliteDirectory::new(store)),
        );
        // Chains may name chains: build until nothing new can be built.
        let mut pending: Vec<(&String, &DirectoryConfig)> = configs
            .iter()
            .filter(|(n, _)| n.as_str() != SQLITE)
            .collect();
        while !pending.is_empty() {
            let before = pending.len();
            let mut later = Vec::new();
            for (name, cfg) in pending {
                let built: Option<Arc<dyn Directory>> = match cfg {
                    DirectoryConfig::Sqlite => by_name.get(SQLITE).cloned(),
                    DirectoryConfig::Http(h) => Some(Arc::new(
                        http::HttpDirectory::new(h, country).map_err(|reason| BuildError {
                            name: name.clone(),
                            reason,
                        })?,
                    )),
                    DirectoryConfig::Chain(members) => members
                        .iter()
                        .map(|m| by_name.get(m).map(|d| (m.clone(), d.clone())))
                        .collect::<Option<Vec<_>>>()
                        .map(|ms| Arc::new(Chain::new(ms)) as Arc<dyn Directory>),
                };
                match built {
                    Some(d) => {
                        by_name.insert(name.clone(), d);
                    }
                    None => later.push((name, cfg)),
                }
            }
            if later.len() == before {
                return Err(BuildError {
                    name: later[0].0.clone(),
                    reason: "names a directory that cannot be built".into(),
                });
            }
            pending = later;
        }
        if !by_name.contains_key(default) {
            return Err(BuildError {
                name: default.to_string(),
                reason: "no such directory".into(),
            });
        }
        Ok(Directories {
            by_name,
            default: default.to_string(),
        })
    }
}

impl Directory for Directories {
    fn lookup<'a>(
        &'a self,
        query: &'a LookupQuery,
    ) -> BoxFut<'a, Result<Option<Account>, ServiceError>> {
        let name = query.directory.as_deref().unwrap_or(&self.default);
        match self.by_name.get(name) {
            Some(d) => d.lookup(query),
            None => {
                let reason = format!("no directory `{name}` is configured");
                Box::pin(async move { Err(ServiceError::Unavailable(reason)) })
            }
        }
    }
}
