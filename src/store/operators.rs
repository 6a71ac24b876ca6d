//! Console operators and their sessions (migration 9).
//!
//! An operator's password is kept only as an Argon2id PHC string (salt and
//! parameters inside); hashing and checking happen in the caller
//! (`web::console`, `app::console`), the store just keeps the string. A
//! session is stored by the SHA-256 of its token, so the database never
//! holds a cookie that would log anyone in; each has its own CSRF token and
//! an expiry (ms since the epoch).

use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use super::{Store, StoreError};

/// An operator as listed (never the hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    /// Login name.
    pub name: String,
    /// Created (ms).
    pub created_at: i64,
    /// Live sessions now.
    pub sessions: u32,
}

/// A live session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Who is logged in.
    pub operator: String,
    /// The token every form of this session must carry.
    pub csrf: String,
    /// When it ends (ms).
    pub expires_at: i64,
}

/// The SHA-256 of a session token: what the table keys sessions by.
fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Operator names: 1 to 64 of letters, digits, `.`, `_`, `-`, `@`.
pub fn valid_operator_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

impl Store {
    /// Add operator `name` with `password_hash` (a PHC string); refuses a
    /// name in use or not [`valid_operator_name`].
    pub fn add_operator(
        &self,
        name: &str,
        password_hash: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        if !valid_operator_name(name) {
            return Err(StoreError::Invalid(format!(
                "operator name `{}` must be 1-64 letters, digits, '.', '_', '-' or '@'",
                name.chars().take(64).collect::<String>()
            )));
        }
        self.with(|c| {
            let n = c.execute(
                "INSERT INTO operators (name, password_hash, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO NOTHING",
                params![name, password_hash, at_ms],
            )?;
            if n == 0 {
                return Err(StoreError::Invalid(format!(
                    "operator `{name}` already exists"
                )));
            }
            Ok(())
        })
    }

    /// Remove operator `name` and end their sessions; `false`: no such one.
    pub fn remove_operator(&self, name: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM console_sessions WHERE operator = ?1", [name])?;
            let n = tx.execute("DELETE FROM operators WHERE name = ?1", [name])?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    /// Every operator, by name, with their live sessions at `now_ms`.
    pub fn operators(&self, now_ms: i64) -> Result<Vec<Operator>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT o.name, o.created_at,
                    (SELECT count(*) FROM console_sessions s WHERE s.operator = o.name AND s.expires_at > ?1)
                 FROM operators o ORDER BY o.name",
            )?;
            let rows = st.query_map([now_ms], |r| {
                Ok(Operator {
                    name: r.get(0)?,
                    created_at: r.get(1)?,
                    sessions: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// The stored PHC string of operator `name`.
    pub fn operator_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT password_hash FROM operators WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?)
        })
    }

    /// Start a session of `operator` under `token` (kept only hashed) with
    /// `csrf`, ending at `expires_at` (ms); expired sessions are swept.
    pub fn create_session(
        &self,
        token: &str,
        operator: &str,
        csrf: &str,
        now_ms: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM console_sessions WHERE expires_at <= ?1",
                [now_ms],
            )?;
            tx.execute(
                "INSERT INTO console_sessions (token_hash, operator, csrf, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![token_hash(token), operator, csrf, now_ms, expires_at],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// The session of `token` if it is live at `now_ms` (and its operator
    /// still exists).
    pub fn session(&self, token: &str, now_ms: i64) -> Result<Option<Session>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT s.operator, s.csrf, s.expires_at FROM console_sessions s
                 JOIN operators o ON o.name = s.operator
                 WHERE s.token_hash = ?1 AND s.expires_at > ?2",
                params![token_hash(token), now_ms],
                |r| {
                    Ok(Session {
                        operator: r.get(0)?,
                        csrf: r.get(1)?,
                        expires_at: r.get(2)?,
                    })
                },
            )
            .optional()?)
        })
    }

    /// End the session of `token` (logout).
    pub fn end_session(&self, token: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM console_sessions WHERE token_hash = ?1",
                [token_hash(token)],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_found_by_token_until_they_expire_and_die_with_their_operator() {
        let dir = std::env::temp_dir().join(format!("vg-ops-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = Store::open(&dir.join("db.sqlite")).unwrap();
        s.add_operator("ana", "$argon2id$x", 1).unwrap();
        assert!(s.add_operator("ana", "$argon2id$y", 2).is_err());
        assert!(s.add_operator("<b>", "h", 2).is_err());
        s.create_session("tok", "ana", "csrf1", 1_000, 2_000)
            .unwrap();
        assert_eq!(s.session("tok", 1_500).unwrap().unwrap().csrf, "csrf1");
        assert!(s.session("other", 1_500).unwrap().is_none());
        assert!(s.session("tok", 2_000).unwrap().is_none());
        // Only the hash is stored.
        let raw: Vec<u8> = s
            .with(|c| Ok(c.query_row("SELECT token_hash FROM console_sessions", [], |r| r.get(0))?))
            .unwrap();
        assert_ne!(raw, b"tok".to_vec());
        assert_eq!(s.operators(1_500).unwrap()[0].sessions, 1);
        assert!(s.remove_operator("ana").unwrap());
        assert!(s.session("tok", 1_500).unwrap().is_none());
        assert!(!s.remove_operator("ana").unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
