//! Who calls the query server, and whose rows they see: query keys (a tenant each, or `*`),
//! session tokens the Flight handshake hands out, and signed tickets.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use nines_model::keys::{KeyTable, presented};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::QueryConfig;
use crate::session::Scope;
use crate::{Error, Result};

/// What a signed token carries: a session (`sql` empty) or a statement's ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// `session`, `statement` or `prepared`.
    pub kind: String,
    /// The scope it was issued to: `*` or a tenant.
    pub scope: String,
    pub sql: String,
    /// Seconds since the epoch after which it is refused.
    pub expires: u64,
}

/// The query server's callers.
#[derive(Clone)]
pub struct Callers {
    keys: KeyTable,
    secret: Vec<u8>,
    ttl: Duration,
}

impl std::fmt::Debug for Callers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callers").finish_non_exhaustive()
    }
}

fn now() -> u64 {
    nines_model::clock::now_s().max(0) as u64
}

impl Callers {
    /// Reads `query.api_keys`; without keys the server may only listen on loopback.
    pub fn from_config(cfg: &QueryConfig, listen: SocketAddr) -> Result<Self, String> {
        let keys = KeyTable::new("query.api_keys", &cfg.api_keys)?;
        if keys.is_empty() && !listen.ip().is_loopback() {
            return Err(format!(
                "query.listen {listen} is not a loopback address and no query.api_keys are \
                 configured: anyone could read every tenant. Configure keys or listen on \
                 127.0.0.1"
            ));
        }
        let secret = match &cfg.ticket_secret {
            Some(s) if s.len() >= 16 => s.as_bytes().to_vec(),
            Some(_) => return Err("query.ticket_secret: at least 16 characters".into()),
            None => {
                let mut s = vec![0_u8; 32];
                rand::fill(&mut s[..]);
                s
            }
        };
        Ok(Self {
            keys,
            secret,
            ttl: cfg.ticket_ttl,
        })
    }

    /// The scope of a caller presenting `authorization: Bearer <key or session token>` (or
    /// `x-nines-api-key: <key>`). Without keys configured, every caller sees every tenant.
    pub fn scope(&self, headers: &axum::http::HeaderMap) -> Result<Scope> {
        if self.keys.is_empty() {
            return Ok(Scope::All);
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let presented =
            presented(header("authorization"), header("x-nines-api-key")).ok_or_else(|| {
                Error::Unauthenticated(
                    "missing query key: send `authorization: Bearer <key>`".into(),
                )
            })?;
        if let Some(tenant) = self.keys.tenant_of(presented) {
            return Ok(Scope::of_key_tenant(tenant));
        }
        match self.verify(presented, "session") {
            Ok(s) => Ok(Scope::of_key_tenant(&s.scope)),
            Err(_) => Err(Error::Unauthenticated("unknown query key".into())),
        }
    }

    /// The Flight handshake's `authorization: Basic <user:key>` (the user name is free,
    /// the password is a query key): the caller's scope and a session token for it.
    pub fn basic(&self, header: Option<&str>) -> Result<(Scope, String)> {
        let scope = if self.keys.is_empty() {
            Scope::All
        } else {
            let encoded = header
                .and_then(|h| {
                    h.strip_prefix("Basic ")
                        .or_else(|| h.strip_prefix("basic "))
                })
                .ok_or_else(|| {
                    Error::Unauthenticated(
                        "the handshake needs `authorization: Basic <user:key>`".into(),
                    )
                })?;
            // Padded (RFC 7617) or not (Go's Flight client, which ADBC's driver is).
            let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(encoded.trim().trim_end_matches('='))
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| Error::Unauthenticated("a malformed Basic credential".into()))?;
            let (_, key) = decoded
                .split_once(':')
                .ok_or_else(|| Error::Unauthenticated("a malformed Basic credential".into()))?;
            let tenant = self
                .keys
                .tenant_of(key)
                .ok_or_else(|| Error::Unauthenticated("unknown query key".into()))?;
            Scope::of_key_tenant(tenant)
        };
        let token = self.sign("session", &scope, "");
        Ok((scope, token))
    }

    /// A signed token of `kind` for `scope` (and `sql`), valid for `query.ticket_ttl`.
    pub fn sign(&self, kind: &str, scope: &Scope, sql: &str) -> String {
        let body = serde_json::to_vec(&Signed {
            kind: kind.to_owned(),
            scope: scope.as_str().to_owned(),
            sql: sql.to_owned(),
            expires: now() + self.ttl.as_secs(),
        })
        .expect("a plain struct serializes");
        let body = URL_SAFE_NO_PAD.encode(body);
        let mac = URL_SAFE_NO_PAD.encode(self.mac(body.as_bytes()).finalize().into_bytes());
        format!("{body}.{mac}")
    }

    /// The content of a token of `kind` this server (or one sharing its secret) signed and
    /// that has not expired.
    pub fn verify(&self, token: &str, kind: &str) -> Result<Signed> {
        let forged = || Error::Unauthenticated(format!("not a valid {kind} ticket"));
        let (body, mac) = token.split_once('.').ok_or_else(forged)?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| forged())?;
        self.mac(body.as_bytes())
            .verify_slice(&mac)
            .map_err(|_| forged())?;
        let signed: Signed = URL_SAFE_NO_PAD
            .decode(body)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(forged)?;
        if signed.kind != kind {
            return Err(forged());
        }
        if signed.expires < now() {
            return Err(Error::Unauthenticated(format!(
                "the {kind} ticket has expired (query.ticket_ttl): ask again"
            )));
        }
        Ok(signed)
    }

    /// The statement of a ticket, if it was issued to `scope`.
    pub fn statement(&self, token: &[u8], kind: &str, scope: &Scope) -> Result<String> {
        let token = std::str::from_utf8(token)
            .map_err(|_| Error::Unauthenticated(format!("not a valid {kind} ticket")))?;
        let signed = self.verify(token, kind)?;
        if signed.scope != scope.as_str() {
            return Err(Error::Unauthenticated(format!(
                "the {kind} ticket was issued to another caller"
            )));
        }
        Ok(signed.sql)
    }

    fn mac(&self, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        mac.update(body);
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nines_model::keys::ApiKey;

    fn callers() -> Callers {
        let cfg = QueryConfig {
            api_keys: vec![
                ApiKey {
                    tenant: "acme".into(),
                    key: Some("k-acme".into()),
                    key_sha256: None,
                },
                ApiKey {
                    tenant: "*".into(),
                    key: Some("k-ops".into()),
                    key_sha256: None,
                },
            ],
            ..QueryConfig::default()
        };
        Callers::from_config(&cfg, "0.0.0.0:50051".parse().unwrap()).unwrap()
    }

    #[test]
    fn tickets_are_bound_to_their_scope_and_cannot_be_forged() {
        let c = callers();
        let acme = Scope::Tenant("acme".into());
        let t = c.sign("statement", &acme, "SELECT 1");
        assert_eq!(
            c.statement(t.as_bytes(), "statement", &acme).unwrap(),
            "SELECT 1"
        );
        let other = c
            .statement(t.as_bytes(), "statement", &Scope::All)
            .unwrap_err();
        assert_eq!(
            other.to_string(),
            "the statement ticket was issued to another caller"
        );
        // Another tenant in the body, the old signature: refused.
        let (_, mac) = t.split_once('.').unwrap();
        let body = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Signed {
                kind: "statement".into(),
                scope: "*".into(),
                sql: "SELECT 1".into(),
                expires: u64::MAX,
            })
            .unwrap(),
        );
        let forged = format!("{body}.{mac}");
        assert_eq!(
            c.statement(forged.as_bytes(), "statement", &Scope::All)
                .unwrap_err()
                .to_string(),
            "not a valid statement ticket"
        );
        // A session token is not a ticket; another server's ticket is not this one's.
        assert!(c.verify(&t, "session").is_err());
        assert!(callers().verify(&t, "statement").is_err());
    }

    #[test]
    fn keys_and_basic_credentials_give_scopes() {
        let c = callers();
        let headers = |v: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert("authorization", v.parse().unwrap());
            h
        };
        assert_eq!(
            c.scope(&headers("Bearer k-acme")).unwrap(),
            Scope::Tenant("acme".into())
        );
        assert_eq!(c.scope(&headers("Bearer k-ops")).unwrap(), Scope::All);
        assert_eq!(
            c.scope(&headers("Bearer nope")).unwrap_err().to_string(),
            "unknown query key"
        );
        assert!(c.scope(&axum::http::HeaderMap::new()).is_err());
        // user:key in Basic gives a session token that stands for the same scope.
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("analyst:k-acme")
        );
        let (scope, token) = c.basic(Some(&basic)).unwrap();
        assert_eq!(scope, Scope::Tenant("acme".into()));
        assert_eq!(
            c.scope(&headers(&format!("Bearer {token}"))).unwrap(),
            scope
        );
        assert!(c.basic(Some("Basic Zm9vOmJhcg==")).is_err());
        // Without padding, as Go's Flight client sends it.
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode("a:k-acme");
        assert_eq!(
            c.basic(Some(&format!("Basic {unpadded}"))).unwrap().0,
            scope
        );
        // Keys are required off loopback.
        let open = Callers::from_config(&QueryConfig::default(), "0.0.0.0:1".parse().unwrap());
        assert!(open.unwrap_err().contains("not a loopback address"));
    }
}
