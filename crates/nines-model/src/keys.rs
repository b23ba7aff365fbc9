//! API keys: each stands for a tenant (a query key may stand for `*`, every tenant). A
//! configuration file holds the key's SHA-256 (`key_sha256`, hex: `printf %s "$KEY" |
//! sha256sum`) so it keeps no secret, or the key itself (`key`).

use std::collections::HashMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// One API key and the tenant it stands for, as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub tenant: String,
    #[serde(default)]
    pub key_sha256: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
}

/// Configured keys by their SHA-256: a key presented is hashed and looked up, so the
/// table holds no secret either.
#[derive(Debug, Clone, Default)]
pub struct KeyTable {
    tenants: HashMap<[u8; 32], String>,
}

impl KeyTable {
    /// The keys of the configuration list `section` (e.g. `ingest.api_keys`); a refusal
    /// names the entry and the field.
    pub fn new(section: &str, keys: &[ApiKey]) -> Result<Self, String> {
        let mut tenants = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            let field = format!("{section}[{i}]");
            if k.tenant.trim().is_empty() || k.tenant.chars().any(char::is_control) {
                return Err(format!("{field}.tenant: must be a non-empty name"));
            }
            let digest = match (&k.key_sha256, &k.key) {
                (Some(hex), None) => parse_hex(hex)
                    .ok_or_else(|| format!("{field}.key_sha256: must be 64 hex digits"))?,
                (None, Some(key)) if !key.is_empty() => digest(key.as_bytes()),
                _ => return Err(format!("{field}: give exactly one of key_sha256 and key")),
            };
            if tenants.insert(digest, k.tenant.clone()).is_some() {
                return Err(format!("{field}: the same key is listed twice"));
            }
        }
        Ok(Self { tenants })
    }

    /// No key is configured.
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// The tenant `key` stands for.
    pub fn tenant_of(&self, key: &str) -> Option<&str> {
        self.tenants
            .get(&digest(key.as_bytes()))
            .map(String::as_str)
    }
}

/// The key a caller presents: `authorization: Bearer <key>`, else `x-nines-api-key: <key>`
/// (the two headers' values, as given); `None` when neither carries one.
pub fn presented<'a>(authorization: Option<&'a str>, api_key: Option<&'a str>) -> Option<&'a str> {
    authorization
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or(api_key)
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0_u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_their_hash_and_refusals_name_the_entry() {
        // sha256("k-beta"), computed with `printf %s k-beta | sha256sum`.
        let beta = "3b6424f5938ab57d09f708b7e81994276b9ea3be655baffd5dbd3ca06433c3c6";
        let key = |tenant: &str, key: Option<&str>, sha: Option<&str>| ApiKey {
            tenant: tenant.into(),
            key: key.map(Into::into),
            key_sha256: sha.map(Into::into),
        };
        let t = KeyTable::new(
            "query.api_keys",
            &[
                key("alpha", Some("k-alpha"), None),
                key("*", None, Some(beta)),
            ],
        )
        .unwrap();
        assert_eq!(t.tenant_of("k-alpha"), Some("alpha"));
        assert_eq!(t.tenant_of("k-beta"), Some("*"));
        assert_eq!(t.tenant_of("k-gamma"), None);
        assert_eq!(presented(Some("Bearer k-alpha"), None), Some("k-alpha"));
        assert_eq!(
            presented(Some("Basic eDp5"), Some(" k-beta ")),
            Some("k-beta")
        );
        assert_eq!(presented(Some("Bearer  "), None), None);
        let err = |keys: &[ApiKey]| KeyTable::new("query.api_keys", keys).unwrap_err();
        assert_eq!(
            err(&[key("a", None, Some("abc"))]),
            "query.api_keys[0].key_sha256: must be 64 hex digits"
        );
        assert_eq!(
            err(&[key("a", Some("x"), None), key("b", Some("x"), None)]),
            "query.api_keys[1]: the same key is listed twice"
        );
        assert_eq!(
            err(&[key(" ", Some("x"), None)]),
            "query.api_keys[0].tenant: must be a non-empty name"
        );
        assert_eq!(
            err(&[key("a", Some("x"), Some(beta))]),
            "query.api_keys[0]: give exactly one of key_sha256 and key"
        );
    }
}
