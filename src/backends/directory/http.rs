//! A CRM over HTTP as a caller directory (being written).

use crate::backends::{Account, BoxFut, Directory, LookupQuery, ServiceError};
use crate::config::HttpDirectoryConfig;
use crate::phone::Country;

/// Looks callers up in a CRM over HTTP.
pub struct HttpDirectory {
    _cfg: HttpDirectoryConfig,
}

impl HttpDirectory {
    /// A directory for `cfg`; fails on a missing `${env.NAME}`.
    pub fn new(cfg: &HttpDirectoryConfig, _country: Country) -> Result<HttpDirectory, String> {
        Ok(HttpDirectory { _cfg: cfg.clone() })
    }
}

impl Directory for HttpDirectory {
    fn lookup<'a>(
        &'a self,
        _query: &'a LookupQuery,
    ) -> BoxFut<'a, Result<Option<Account>, ServiceError>> {
        Box::pin(async {
            Err(ServiceError::Unavailable(
                "the HTTP directory is not built yet".into(),
            ))
        })
    }
}
