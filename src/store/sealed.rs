//! Secrets at rest: passphrases and TOTP secrets are sealed with
//! XChaCha20-Poly1305 under the server's secret key, with the account id and
//! the field name as associated data, so a sealed value copied to another
//! account or column no longer opens.
//!
//! The key is 32 bytes, from `VOXGATE_SECRET_KEY` (base64) or a key file
//! (base64, created with mode 0600 on first use). A wrong or missing key is
//! an error, never a plaintext fallback. The database keeps a check value
//! (HMAC-SHA-256 of a fixed label under the key) so a wrong key is caught
//! when the store opens, not on the first caller.

use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use data_encoding::BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// The environment variable that may hold the key (base64 of 32 bytes).
pub const KEY_ENV: &str = "VOXGATE_SECRET_KEY";

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 24;
const CHECK_LABEL: &[u8] = b"voxgate secret key check v1";

/// Why a key could not be had or a secret could not be opened. Never holds
/// key material or a secret.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Neither the environment variable nor the key file holds a key, and
    /// this command may not create one.
    #[error("no secret key: set {KEY_ENV} or create the key file {0}")]
    Missing(PathBuf),
    /// The key's text is not base64 of 32 bytes.
    #[error("{source_name}: not a secret key (expected base64 of 32 bytes)")]
    Malformed {
        /// `VOXGATE_SECRET_KEY` or the key file's path.
        source_name: String,
    },
    /// The key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The key file is readable by others than its owner.
    #[error("{0}: the key file is readable by group or others; chmod 600 it")]
    Exposed(PathBuf),
    /// A sealed value did not open under this key.
    #[error("a sealed secret does not open with this key (wrong key, or the value was altered)")]
    WrongKey,
}

/// The server's 32-byte secret key; wiped from memory when dropped.
pub struct SecretKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

impl SecretKey {
    /// A new key from the OS's CSPRNG.
    pub fn generate() -> SecretKey {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::fill(&mut k[..]);
        SecretKey(k)
    }

    /// Parse base64 text (surrounding white space ignored).
    pub fn from_base64(text: &str, source_name: &str) -> Result<SecretKey, KeyError> {
        let malformed = || KeyError::Malformed {
            source_name: source_name.to_string(),
        };
        let mut bytes = Zeroizing::new(
            BASE64
                .decode(text.trim().as_bytes())
                .map_err(|_| malformed())?,
        );
        if bytes.len() != 32 {
            bytes.zeroize();
            return Err(malformed());
        }
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&bytes);
        Ok(SecretKey(k))
    }

    /// The key as base64 text, for a key file.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE64.encode(&self.0[..]))
    }

    /// The key from `VOXGATE_SECRET_KEY` if set, else from `file`; with
    /// `create`, a missing file is created (0600) holding a new key.
    pub fn load(file: &Path, create: bool) -> Result<SecretKey, KeyError> {
        if let Ok(v) = std::env::var(KEY_ENV) {
            let v = Zeroizing::new(v);
            return SecretKey::from_base64(&v, KEY_ENV);
        }
        match read_key_file(file) {
            Ok(k) => Ok(k),
            Err(KeyError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && create =>
            {
                let key = SecretKey::generate();
                write_key_file(file, &key)?;
                tracing::info!(file = %file.display(), "created a new secret key file (mode 0600)");
                Ok(key)
            }
            Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Err(KeyError::Missing(file.to_path_buf()))
            }
            Err(e) => Err(e),
        }
    }

    /// A key for one purpose (e.g. the one-time codes' MACs), derived from
    /// this one with HMAC-SHA-256 over `label`, so no two uses share a key.
    pub fn subkey(&self, label: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0[..])
            .expect("HMAC takes keys of any length");
        mac.update(b"voxgate subkey\0");
        mac.update(label);
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&mac.finalize().into_bytes());
        out
    }

    /// The value kept in the database to recognise this key.
    pub fn check_value(&self) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0[..])
            .expect("HMAC takes keys of any length");
        mac.update(CHECK_LABEL);
        mac.finalize().into_bytes().to_vec()
    }

    /// Whether `stored` is this key's check value (constant time).
    pub fn matches_check(&self, stored: &[u8]) -> bool {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0[..])
            .expect("HMAC takes keys of any length");
        mac.update(CHECK_LABEL);
        mac.verify_slice(stored).is_ok()
    }

    /// Seal `secret` for `field` of account `account_id`.
    pub fn seal(&self, account_id: &str, field: &str, secret: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new((&*self.0).into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce[..]);
        let aad = associated_data(account_id, field);
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any length a secret has");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Open what [`SecretKey::seal`] sealed for the same account and field.
    pub fn open(
        &self,
        account_id: &str,
        field: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != FORMAT_V1 {
            return Err(KeyError::WrongKey);
        }
        let cipher = XChaCha20Poly1305::new((&*self.0).into());
        let aad = associated_data(account_id, field);
        cipher
            .decrypt(
                XNonce::from_slice(&sealed[1..1 + NONCE_LEN]),
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| KeyError::WrongKey)
    }
}

fn associated_data(account_id: &str, field: &str) -> Vec<u8> {
    format!("voxgate/{field}/{account_id}").into_bytes()
}

fn read_key_file(file: &Path) -> Result<SecretKey, KeyError> {
    let io = |source| KeyError::Io {
        path: file.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(file).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(KeyError::Exposed(file.to_path_buf()));
        }
    }
    let text = Zeroizing::new(std::fs::read_to_string(file).map_err(io)?);
    SecretKey::from_base64(&text, &file.display().to_string())
}

/// Write `key` to `file` (mode 0600) atomically: a temporary file beside it,
/// synced, then renamed over it.
pub fn write_key_file(file: &Path, key: &SecretKey) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: file.to_path_buf(),
        source,
    };
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = file.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(key.to_base64().as_bytes()).map_err(io)?;
    f.write_all(b"\n").map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, file).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_for_their_account_and_field_under_their_key() {
        let k = SecretKey::generate();
        let s = k.seal("acc_1", "passphrase", b"white horse");
        assert!(!s.windows(5).any(|w| w == b"white"));
        assert_eq!(
            &k.open("acc_1", "passphrase", &s).unwrap()[..],
            b"white horse"
        );
        assert!(k.open("acc_2", "passphrase", &s).is_err());
        assert!(k.open("acc_1", "totp_secret", &s).is_err());
        assert!(SecretKey::generate()
            .open("acc_1", "passphrase", &s)
            .is_err());
        let mut bent = s.clone();
        *bent.last_mut().unwrap() ^= 1;
        assert!(k.open("acc_1", "passphrase", &bent).is_err());
        assert!(k.open("acc_1", "passphrase", &s[..10]).is_err());
        // Two seals of one secret differ (random nonces).
        assert_ne!(s, k.seal("acc_1", "passphrase", b"white horse"));
    }

    #[test]
    fn keys_round_trip_through_base64_and_check_values_tell_them_apart() {
        let k = SecretKey::generate();
        let again = SecretKey::from_base64(&k.to_base64(), "t").unwrap();
        assert!(again.matches_check(&k.check_value()));
        assert!(!SecretKey::generate().matches_check(&k.check_value()));
        assert!(SecretKey::from_base64("c2hvcnQ=", "t").is_err());
        assert!(SecretKey::from_base64("not base64!", "t").is_err());
        assert_eq!(format!("{k:?}"), "SecretKey(…)");
    }

    #[test]
    fn key_files_are_created_private_and_refused_when_exposed() {
        let dir = std::env::temp_dir().join(format!("vg-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = dir.join("secret.key");
        // The environment variable would win; this test does not set it.
        if std::env::var(KEY_ENV).is_ok() {
            return;
        }
        assert!(matches!(
            SecretKey::load(&file, false),
            Err(KeyError::Missing(_))
        ));
        let k = SecretKey::load(&file, true).unwrap();
        let again = SecretKey::load(&file, false).unwrap();
        assert!(again.matches_check(&k.check_value()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                SecretKey::load(&file, false),
                Err(KeyError::Exposed(_))
            ));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
