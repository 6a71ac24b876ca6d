//! The embedded account store as a caller directory. Lookups run on tokio's
//! blocking pool: SQLite never blocks a signalling or media thread.

use std::sync::Arc;

use crate::backends::{Account, BoxFut, Directory, LookupQuery, ServiceError};
use crate::store::AccountStore;

/// Finds accounts in the store by (brand, E.164 number).
pub struct SqliteDirectory {
    store: Arc<dyn AccountStore>,
}

impl SqliteDirectory {
    /// A directory over `store`.
    pub fn new(store: Arc<dyn AccountStore>) -> SqliteDirectory {
        SqliteDirectory { store }
    }
}

impl Directory for SqliteDirectory {
    fn lookup<'a>(
        &'a self,
        query: &'a LookupQuery,
    ) -> BoxFut<'a, Result<Option<Account>, ServiceError>> {
        let store = self.store.clone();
        let (brand, number) = (query.brand.clone(), query.number.clone());
        Box::pin(async move {
            let found = tokio::task::spawn_blocking(move || store.find(&brand, &number))
                .await
                .map_err(|e| ServiceError::Failed(format!("account store: {e}")))?
                .map_err(|e| ServiceError::Failed(format!("account store: {e}")))?;
            Ok(found.map(|a| a.flow_fields()))
        })
    }
}
