//! API keys → tenants. The tenant of every event is the one its key stands for; whatever a
//! payload says about its tenant is overwritten.

use std::net::SocketAddr;

use nines_model::keys::{KeyTable, presented};
use tonic::metadata::MetadataMap;

use crate::config::IngestConfig;
use crate::validate::DEFAULT_TENANT;
use crate::{Error, Result};

/// The tenant a call was authenticated as, put in its extensions before the body is read
/// ([`crate::door::Admission`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(pub String);

/// Who may push, and as which tenant.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// Key → tenant. Empty: single-tenant, no key needed.
    keys: KeyTable,
}

impl Auth {
    /// Reads `ingest.api_keys` and checks the listen address is allowed without keys.
    pub fn from_config(
        cfg: &IngestConfig,
        listen: SocketAddr,
    ) -> std::result::Result<Self, String> {
        let keys = KeyTable::new("ingest.api_keys", &cfg.api_keys)?;
        if keys.is_empty() && !listen.ip().is_loopback() && !cfg.allow_unauthenticated {
            return Err(format!(
                "ingest.listen {listen} is not a loopback address and no ingest.api_keys are \
                 configured: anyone could push. Configure keys, or set \
                 ingest.allow_unauthenticated = true"
            ));
        }
        Ok(Self { keys })
    }

    /// Single-tenant (no keys configured).
    pub fn open() -> Self {
        Self::default()
    }

    /// The tenant a request pushes as: from `authorization: Bearer <key>` or
    /// `x-nines-api-key: <key>`; `default` when no keys are configured.
    pub fn tenant(&self, metadata: &MetadataMap) -> Result<String> {
        self.tenant_from_headers(metadata.as_ref())
    }

    /// The tenant of a call: the one [`crate::door::Admission`] found, else from its
    /// metadata (a service called directly, as in tests).
    pub fn tenant_of<T>(&self, request: &tonic::Request<T>) -> Result<String> {
        match request.extensions().get::<Tenant>() {
            Some(t) => Ok(t.0.clone()),
            None => self.tenant(request.metadata()),
        }
    }

    /// [`Auth::tenant`] from plain HTTP headers.
    pub fn tenant_from_headers(&self, headers: &tonic::codegen::http::HeaderMap) -> Result<String> {
        if self.keys.is_empty() {
            return Ok(DEFAULT_TENANT.to_owned());
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let key = presented(header("authorization"), header("x-nines-api-key"))
            .ok_or_else(|| {
                Error::Unauthenticated(
                    "missing API key: send `authorization: Bearer <key>` or `x-nines-api-key: <key>`"
                        .into(),
                )
            })?;
        self.keys
            .tenant_of(key)
            .map(str::to_owned)
            .ok_or_else(|| Error::Unauthenticated("unknown API key".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKey;

    fn cfg(keys: Vec<ApiKey>) -> IngestConfig {
        IngestConfig {
            api_keys: keys,
            ..IngestConfig::default()
        }
    }

    fn meta(name: &'static str, value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert(name, value.parse().unwrap());
        m
    }

    #[test]
    fn keys_map_to_their_tenants_by_either_header() {
        // sha256("k-beta"), computed with `printf %s k-beta | sha256sum`.
        let beta_hex =
            "3b6424f5938ab57d09f708b7e81994276b9ea3be655baffd5dbd3ca06433c3c6".to_owned();
        let auth = Auth::from_config(
            &cfg(vec![
                ApiKey {
                    tenant: "alpha".into(),
                    key: Some("k-alpha".into()),
                    key_sha256: None,
                },
                ApiKey {
                    tenant: "beta".into(),
                    key: None,
                    key_sha256: Some(beta_hex),
                },
            ]),
            "127.0.0.1:4317".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(
            auth.tenant(&meta("authorization", "Bearer k-alpha"))
                .unwrap(),
            "alpha"
        );
        assert_eq!(
            auth.tenant(&meta("x-nines-api-key", "k-beta")).unwrap(),
            "beta"
        );
        let wrong = auth
            .tenant(&meta("authorization", "Bearer nope"))
            .unwrap_err();
        assert_eq!(wrong.to_string(), "unknown API key");
        let missing = auth.tenant(&MetadataMap::new()).unwrap_err();
        assert!(missing.to_string().starts_with("missing API key"));
    }

    #[test]
    fn without_keys_only_loopback_unless_allowed() {
        let open = cfg(vec![]);
        assert!(Auth::from_config(&open, "127.0.0.1:4317".parse().unwrap()).is_ok());
        let err = Auth::from_config(&open, "0.0.0.0:4317".parse().unwrap()).unwrap_err();
        assert!(err.contains("not a loopback address"), "{err}");
        let allowed = IngestConfig {
            allow_unauthenticated: true,
            ..IngestConfig::default()
        };
        assert!(Auth::from_config(&allowed, "0.0.0.0:4317".parse().unwrap()).is_ok());
        assert_eq!(
            Auth::open().tenant(&MetadataMap::new()).unwrap(),
            DEFAULT_TENANT
        );
    }
}
