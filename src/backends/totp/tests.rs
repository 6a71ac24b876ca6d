use super::*;
use crate::phone::{normalise, Country};
use crate::store::{NewAccount, Store};
use std::time::Duration;

const SEED20: &[u8] = b"12345678901234567890";
const SEED32: &[u8] = b"12345678901234567890123456789012";
const SEED64: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

fn params(algorithm: TotpAlgorithm, digits: u32) -> TotpParams {
    TotpParams { algorithm, digits }
}

/// RFC 6238 Appendix B: 8 digits, T0 = 0, X = 30, one seed per hash.
#[test]
fn rfc6238_appendix_b_vectors() {
    let times = [
        59u64,
        1111111109,
        1111111111,
        1234567890,
        2000000000,
        20000000000,
    ];
    let table: [(TotpAlgorithm, &[u8], [&str; 6]); 3] = [
        (
            TotpAlgorithm::Sha1,
            SEED20,
            [
                "94287082", "07081804", "14050471", "89005924", "69279037", "65353130",
            ],
        ),
        (
            TotpAlgorithm::Sha256,
            SEED32,
            [
                "46119246", "68084774", "67062674", "91819424", "90698825", "77737706",
            ],
        ),
        (
            TotpAlgorithm::Sha512,
            SEED64,
            [
                "90693936", "25091201", "99943326", "93441116", "38618901", "47863826",
            ],
        ),
    ];
    for (alg, seed, want) in table {
        for (t, w) in times.iter().zip(want) {
            assert_eq!(&*code_at(seed, params(alg, 8), *t), w, "{alg} at {t}");
            // The step is found within the window, and only there.
            assert_eq!(
                matching_step(seed, params(alg, 8), w, *t, 0),
                Some(t / STEP_SECS)
            );
            assert_eq!(
                matching_step(seed, params(alg, 8), w, t + 2 * STEP_SECS, 1),
                None
            );
        }
    }
}

/// RFC 4226 Appendix D: HOTP-SHA1, 6 digits, counters 0–9 (TOTP's counter
/// is time / 30, so counter c is the code at 30·c).
#[test]
fn rfc4226_appendix_d_vectors() {
    let want = [
        "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871",
        "520489",
    ];
    for (c, w) in want.iter().enumerate() {
        let t = c as u64 * STEP_SECS;
        assert_eq!(
            &*code_at(SEED20, TotpParams::default(), t),
            w,
            "counter {c}"
        );
    }
    // 7 digits is the same truncation, one more digit.
    assert_eq!(
        &*code_at(SEED20, params(TotpAlgorithm::Sha1, 7), 0),
        "4755224"
    );
}

#[test]
fn the_window_reaches_steps_either_side_and_no_further() {
    let p = TotpParams::default();
    let t = 1_800_000_000u64;
    let earlier = code_at(SEED20, p, t - STEP_SECS);
    let later = code_at(SEED20, p, t + 2 * STEP_SECS);
    assert_eq!(matching_step(SEED20, p, &earlier, t, 0), None);
    assert_eq!(
        matching_step(SEED20, p, &earlier, t, 1),
        Some(t / STEP_SECS - 1)
    );
    assert_eq!(matching_step(SEED20, p, &later, t, 1), None);
    assert_eq!(
        matching_step(SEED20, p, &later, t, 2),
        Some(t / STEP_SECS + 2)
    );
    // Windows above the maximum are held to it.
    let far = code_at(SEED20, p, t + 4 * STEP_SECS);
    assert_eq!(matching_step(SEED20, p, &far, t, 9), None);
    // Not a code at all.
    assert_eq!(matching_step(SEED20, p, "", t, 3), None);
    assert_eq!(matching_step(SEED20, p, "12345", t, 3), None);
}

struct Fixture {
    dir: std::path::PathBuf,
    v: StoreTotp,
    id: String,
    bare: String,
    secret: Vec<u8>,
    params: TotpParams,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture(tag: &str, params: TotpParams) -> Fixture {
    let dir = std::env::temp_dir().join(format!(
        "vg-totp-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let store = Store::open(&dir.join("v.db")).unwrap();
    let key = SecretKey::generate();
    let secret = SEED32.to_vec();
    let id = store
        .add(
            &NewAccount {
                phone: Some(normalise("+16502530000", Country::default()).unwrap()),
                totp_secret: Some(Zeroizing::new(secret.clone())),
                totp_params: params,
                ..Default::default()
            },
            Some(&key),
        )
        .unwrap();
    let bare = store
        .add(
            &NewAccount {
                phone: Some(normalise("+16502530001", Country::default()).unwrap()),
                ..Default::default()
            },
            None,
        )
        .unwrap();
    let policy = TotpPolicy {
        max_failures: 3,
        window: Duration::from_secs(3600),
    };
    Fixture {
        dir,
        v: StoreTotp::new(Arc::new(store), Arc::new(key), policy),
        id,
        bare,
        secret,
        params,
    }
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

impl Fixture {
    fn code(&self, secs: u64) -> String {
        code_at(&self.secret, self.params, 1_800_000_000 + secs).to_string()
    }
    async fn check(&self, code: &str, secs: u64) -> TotpCheck {
        self.v.verify(&self.id, code, 1, at(secs)).await.unwrap()
    }
}

#[tokio::test]
async fn a_code_is_accepted_once_and_older_steps_are_refused_after() {
    let f = fixture("replay", params(TotpAlgorithm::Sha256, 8));
    let now = f.code(60);
    assert_eq!(now.len(), 8);
    assert_eq!(f.check(&now, 60).await, TotpCheck::Accepted);
    // The same code again, in the same step or the next: replayed.
    assert_eq!(f.check(&now, 61).await, TotpCheck::Replayed);
    // The previous step's code is still in the window, but older.
    let before = f.code(30);
    assert_eq!(f.check(&before, 70).await, TotpCheck::Replayed);
    // The next step's code is new.
    let next = f.code(90);
    assert_eq!(f.check(&next, 90).await, TotpCheck::Accepted);
    // A SHA-1 code of the same secret is simply wrong for this account.
    let sha1 = code_at(&f.secret, TotpParams::default(), 1_800_000_000 + 120);
    assert_eq!(f.check(&sha1, 120).await, TotpCheck::Wrong);
}

#[tokio::test]
async fn wrong_codes_lock_the_account_until_they_leave_the_window() {
    let f = fixture("lock", TotpParams::default());
    let good = f.code(0);
    let wrong = if good == "000000" { "111111" } else { "000000" };
    for s in 0..3 {
        assert_eq!(f.check(wrong, s).await, TotpCheck::Wrong);
    }
    // Locked, even for the right code, which is not judged (nor used up).
    assert_eq!(f.check(&good, 5).await, TotpCheck::Locked);
    // An hour later the failures have left the window.
    let later = f.code(3700);
    assert_eq!(f.check(&later, 3700).await, TotpCheck::Accepted);
    // A success clears the count: three more wrong ones are allowed.
    for s in 3701..3703 {
        assert_eq!(f.check(wrong, s).await, TotpCheck::Wrong);
    }
    let next = f.code(3730);
    assert_eq!(f.check(&next, 3730).await, TotpCheck::Accepted);
}

#[tokio::test]
async fn no_account_or_no_secret_is_not_enrolled() {
    let f = fixture("none", TotpParams::default());
    let code = f.code(0);
    for who in ["acc_nobody", "+16502530000", f.bare.as_str()] {
        assert_eq!(
            f.v.verify(who, &code, 1, at(0)).await.unwrap(),
            TotpCheck::NotEnrolled,
            "{who}"
        );
    }
}

#[tokio::test]
async fn parallel_calls_accept_one_code_once() {
    let f = Arc::new(fixture("race", params(TotpAlgorithm::Sha512, 7)));
    let code = f.code(10);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (f, code) = (f.clone(), code.clone());
        tasks.push(tokio::spawn(async move { f.check(&code, 10).await }));
    }
    let mut accepted = 0;
    for t in tasks {
        match t.await.unwrap() {
            TotpCheck::Accepted => accepted += 1,
            TotpCheck::Replayed | TotpCheck::Locked => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(accepted, 1);
}
