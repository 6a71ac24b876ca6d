use zeroize::Zeroizing;

use super::*;
use crate::phone::{normalise, Country};

pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "vg-store-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    pub(super) fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn num(s: &str) -> E164 {
    normalise(s, Country::default()).unwrap()
}

fn account(phone: &str, brand: &str) -> NewAccount {
    NewAccount {
        brand: brand.into(),
        phone: Some(num(phone)),
        name: Some("Ada".into()),
        ..Default::default()
    }
}

#[test]
fn a_new_file_gets_the_latest_schema_in_wal_mode() {
    let d = TempDir::new("new");
    let s = Store::open(&d.file("sub/dir/v.db")).unwrap();
    s.with(|c| {
        assert_eq!(migrate::version(c)?, migrate::LATEST);
        let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        assert_eq!(mode, "wal");
        Ok(())
    })
    .unwrap();
}

#[test]
fn every_earlier_schema_version_migrates_and_keeps_its_accounts() {
    for from in 0..migrate::LATEST {
        let d = TempDir::new("mig");
        let path = d.file("v.db");
        {
            let mut c = Connection::open(&path).unwrap();
            migrate::apply_up_to(&mut c, from).unwrap();
            if from >= 1 {
                c.execute(
                    "INSERT INTO accounts (id, brand, phone, fields, created_at, updated_at)
                     VALUES ('acc_old', '', '+16502530000', '{\"tier\":\"gold\"}', 1, 1)",
                    [],
                )
                .unwrap();
            }
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.with(|c| migrate::version(c)).unwrap(), migrate::LATEST);
        if from >= 1 {
            let a = s.find("", &num("+16502530000")).unwrap().unwrap();
            assert_eq!(a.id, "acc_old");
            assert_eq!(a.fields.get("tier").map(String::as_str), Some("gold"));
            // Accounts from before migration 7 keep what authenticator apps assume.
            assert_eq!(a.totp, crate::store::TotpParams::default());
        }
        // And it can hold a new account and a key check.
        s.add(&account("+16502530001", ""), None).unwrap();
        s.check_key(&SecretKey::generate()).unwrap();
        // Opening again is a no-op.
        drop(s);
        Store::open(&path).unwrap();
    }
}

#[test]
fn a_file_from_a_newer_voxgate_is_refused() {
    let d = TempDir::new("newer");
    let path = d.file("v.db");
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", migrate::LATEST + 1)
        .unwrap();
    let e = Store::open(&path).unwrap_err().to_string();
    assert!(e.contains("schema version"), "{e}");
}

#[test]
fn corrupt_unwritable_and_locked_files_are_clear_errors() {
    let d = TempDir::new("bad");
    let junk = d.file("junk.db");
    std::fs::write(&junk, vec![0x42u8; 8192]).unwrap();
    let e = Store::open(&junk).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("junk.db"), "{e}");

    // A folder where the file should be.
    let e = Store::open(&d.0).unwrap_err().to_string();
    assert!(e.contains("cannot open") || e.contains("database"), "{e}");

    // Another connection holds the write lock past the busy timeout.
    let path = d.file("locked.db");
    let s = Store::open(&path).unwrap();
    let holder = Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let started = std::time::Instant::now();
    let e = s.add(&account("+16502530002", ""), None).unwrap_err();
    assert!(matches!(e, StoreError::Locked), "{e:?}");
    assert!(started.elapsed() >= Duration::from_secs(4));
    holder.execute_batch("ROLLBACK").unwrap();
    s.add(&account("+16502530002", ""), None).unwrap();
}

#[test]
fn numbers_are_unique_per_brand_and_lookups_stay_in_their_brand() {
    let d = TempDir::new("brand");
    let s = Store::open(&d.file("v.db")).unwrap();
    let a = s.add(&account("+16502530000", "acme"), None).unwrap();
    let b = s.add(&account("+16502530000", "globex"), None).unwrap();
    assert_ne!(a, b);
    let e = s.add(&account("(650) 253-0000", "acme"), None).unwrap_err();
    assert!(matches!(e, StoreError::DuplicateNumber { .. }), "{e:?}");
    assert_eq!(s.find("acme", &num("+16502530000")).unwrap().unwrap().id, a);
    assert_eq!(
        s.find("globex", &num("+16502530000")).unwrap().unwrap().id,
        b
    );
    assert!(s.find("", &num("+16502530000")).unwrap().is_none());
    let mut ids = Vec::new();
    s.for_each(Some("globex"), |r| {
        ids.push(r.id);
        Ok(())
    })
    .unwrap();
    assert_eq!(ids, vec![b.clone()]);
    s.remove(&b).unwrap();
    assert!(matches!(s.remove(&b), Err(StoreError::NotFound(_))));
}

#[test]
fn secrets_are_sealed_checked_against_the_key_and_rotated() {
    let d = TempDir::new("secret");
    let path = d.file("v.db");
    let s = Store::open(&path).unwrap();
    let k1 = SecretKey::generate();
    let mut a = account("+16502530000", "");
    a.passphrase = Some(Zeroizing::new("purple elephant dance".into()));
    a.totp_secret = Some(Zeroizing::new(b"12345678901234567890".to_vec()));
    let id = s.add(&a, Some(&k1)).unwrap();
    // No key, no secrets.
    assert!(s.add(&a, None).is_err());
    let rec = s.get(&id).unwrap().unwrap();
    assert!(rec.has_passphrase && rec.has_totp);
    assert_eq!(
        rec.flow_fields().get("passphrase").map(String::as_str),
        Some("set")
    );
    assert_eq!(
        &s.secret(&id, SecretField::Passphrase, &k1)
            .unwrap()
            .unwrap()[..],
        b"purple elephant dance"
    );
    let k2 = SecretKey::generate();
    assert!(matches!(s.check_key(&k2), Err(StoreError::KeyMismatch)));
    assert!(matches!(
        s.add(&account("+16502530001", ""), Some(&k2)),
        Err(StoreError::KeyMismatch)
    ));
    assert_eq!(s.rotate_key(&k1, &k2).unwrap(), 2);
    s.check_key(&k2).unwrap();
    assert!(matches!(s.check_key(&k1), Err(StoreError::KeyMismatch)));
    assert_eq!(
        &s.secret(&id, SecretField::TotpSecret, &k2)
            .unwrap()
            .unwrap()[..],
        b"12345678901234567890"
    );
    assert!(s.secret(&id, SecretField::TotpSecret, &k1).is_err());
    // Clearing a secret by update.
    let u = AccountUpdate {
        passphrase: Some(None),
        ..Default::default()
    };
    assert!(!s.update(&id, &u, Some(&k2)).unwrap().has_passphrase);
    drop(s);
    for f in ["v.db", "v.db-wal"] {
        if let Ok(bytes) = std::fs::read(d.file(f)) {
            for secret in [&b"purple elephant"[..], b"1234567890123456"] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret),
                    "{f} holds a secret in clear"
                );
            }
        }
    }
}

#[test]
fn updates_change_what_they_name_and_refuse_a_taken_number() {
    let d = TempDir::new("upd");
    let s = Store::open(&d.file("v.db")).unwrap();
    let id = s.add(&account("+16502530000", ""), None).unwrap();
    s.add(&account("+16502530001", ""), None).unwrap();
    let mut u = AccountUpdate {
        email: Some(Some("ada@example.org".into())),
        line_type: Some(Some(crate::phone::LineType::Landline)),
        ..Default::default()
    };
    u.fields.insert("dob".into(), "19700101".into());
    let r = s.update(&id, &u, None).unwrap();
    assert_eq!(r.email.as_deref(), Some("ada@example.org"));
    assert_eq!(
        r.flow_fields().get("line_type").map(String::as_str),
        Some("landline")
    );
    assert_eq!(
        r.flow_fields().get("dob").map(String::as_str),
        Some("19700101")
    );
    let taken = AccountUpdate {
        phone: Some(num("+16502530001")),
        ..Default::default()
    };
    assert!(matches!(
        s.update(&id, &taken, None),
        Err(StoreError::DuplicateNumber { .. })
    ));
    let mut bad = AccountUpdate::default();
    bad.fields.insert("phone".into(), "x".into());
    assert!(s.update(&id, &bad, None).is_err());
    assert!(matches!(
        s.update("acc_nope", &AccountUpdate::default(), None),
        Err(StoreError::NotFound(_))
    ));
}
