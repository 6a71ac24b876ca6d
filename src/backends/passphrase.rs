//! Spoken passphrases checked against the account store: the enrolled
//! phrase is opened from its seal only for the check (and as the
//! recogniser's hint), compared whole-utterance to whole-phrase after
//! normalisation (`asr::phrase`), and failures count per account across
//! calls towards a lockout. Store work runs on tokio's blocking pool.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use zeroize::Zeroizing;

use super::{
    BoxFut, Enrolment, PassphraseSubject, PassphraseVerdict, PassphraseVerifier, ServiceError,
};
use crate::asr::phrase;
use crate::store::lockout::Factor;
use crate::store::{AccountStore, SecretField, SecretKey, StoreError};

pub use crate::config::PassphrasePolicy;

pub mod strength;

/// The store-backed verifier `serve` uses.
pub struct StorePassphrases {
    store: Arc<dyn AccountStore>,
    key: Arc<SecretKey>,
    policy: PassphrasePolicy,
}

impl StorePassphrases {
    /// A verifier over `store`, opening secrets with `key`.
    pub fn new(
        store: Arc<dyn AccountStore>,
        key: Arc<SecretKey>,
        policy: PassphrasePolicy,
    ) -> Self {
        StorePassphrases { store, key, policy }
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn failed(e: StoreError) -> ServiceError {
    ServiceError::Failed(format!("account store: {e}"))
}

/// Run blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Failed(format!("account store: {e}")))?
        .map_err(failed)
}

/// What the check needs, read in one blocking trip.
enum Loaded {
    NotEnrolled,
    Locked,
    Phrase(Zeroizing<String>),
}

impl StorePassphrases {
    fn since(&self, now: SystemTime) -> i64 {
        unix(now) - self.policy.window.as_secs() as i64
    }

    async fn load(
        &self,
        subject: &PassphraseSubject,
        now: SystemTime,
    ) -> Result<Loaded, ServiceError> {
        let Some(id) = subject.account_id.clone() else {
            return Ok(Loaded::NotEnrolled);
        };
        let (store, key) = (self.store.clone(), self.key.clone());
        let (since, max) = (self.since(now), self.policy.max_failures);
        blocking(move || {
            if store.failures_since(&id, Factor::Passphrase, since)? >= max {
                return Ok(Loaded::Locked);
            }
            let Some(bytes) = store.secret(&id, SecretField::Passphrase, &key)? else {
                return Ok(Loaded::NotEnrolled);
            };
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| StoreError::Invalid("a sealed passphrase is not UTF-8".into()))?;
            Ok(Loaded::Phrase(Zeroizing::new(text)))
        })
        .await
    }
}

impl PassphraseVerifier for StorePassphrases {
    fn enrolment<'a>(
        &'a self,
        subject: &'a PassphraseSubject,
        now: SystemTime,
    ) -> BoxFut<'a, Result<Enrolment, ServiceError>> {
        Box::pin(async move {
            Ok(match self.load(subject, now).await? {
                Loaded::NotEnrolled => Enrolment::NotEnrolled,
                Loaded::Locked => Enrolment::Locked,
                Loaded::Phrase(p) => {
                    let digits = phrase::is_digits(&p);
                    Enrolment::Ready { hint: p, digits }
                }
            })
        })
    }

    fn verify<'a>(
        &'a self,
        subject: &'a PassphraseSubject,
        transcript: &'a str,
        confidence: f32,
        now: SystemTime,
    ) -> BoxFut<'a, Result<PassphraseVerdict, ServiceError>> {
        Box::pin(async move {
            let enrolled = match self.load(subject, now).await? {
                Loaded::Locked => return Ok(PassphraseVerdict::Locked),
                // Nothing to match: a no-match (the step checked enrolment first).
                Loaded::NotEnrolled => return Ok(PassphraseVerdict::NoMatch),
                Loaded::Phrase(p) => p,
            };
            let Some(id) = subject.account_id.clone() else {
                return Ok(PassphraseVerdict::NoMatch);
            };
            // The guess is counted before it is judged (see reserve_check).
            let store = self.store.clone();
            let (at, since, max) = (unix(now), self.since(now), self.policy.max_failures);
            let reserved = {
                let (store, id) = (store.clone(), id.clone());
                blocking(move || store.reserve_check(&id, Factor::Passphrase, at, since, max))
                    .await?
            };
            if !reserved {
                return Ok(PassphraseVerdict::Locked);
            }
            let gate = if phrase::is_digits(&enrolled) {
                self.policy.min_confidence_digits
            } else {
                self.policy.min_confidence
            };
            let verdict = if !phrase::matches(&enrolled, transcript) {
                PassphraseVerdict::NoMatch
            } else if confidence < gate {
                PassphraseVerdict::LowConfidence
            } else {
                PassphraseVerdict::Match
            };
            drop(enrolled);
            if verdict == PassphraseVerdict::Match {
                blocking(move || store.clear_failures(&id, Factor::Passphrase)).await?;
            }
            Ok(verdict)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::{normalise, Country};
    use crate::store::{NewAccount, Store};
    use std::time::Duration;

    struct Fixture {
        dir: std::path::PathBuf,
        v: StorePassphrases,
        subject: PassphraseSubject,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn fixture(tag: &str, phrase: Option<&str>) -> Fixture {
        let dir = std::env::temp_dir().join(format!(
            "vg-pass-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let store = Store::open(&dir.join("v.db")).unwrap();
        let key = SecretKey::generate();
        let id = store
            .add(
                &NewAccount {
                    phone: Some(normalise("+16502530000", Country::default()).unwrap()),
                    passphrase: phrase.map(|p| Zeroizing::new(p.to_string())),
                    ..Default::default()
                },
                Some(&key),
            )
            .unwrap();
        let policy = PassphrasePolicy {
            min_confidence: 0.5,
            min_confidence_digits: 0.3,
            max_failures: 3,
            window: Duration::from_secs(3600),
            speculate_after: None,
            confirm: false,
            encoder_window: crate::config::EncoderWindow::Full,
            enrolment: crate::config::EnrolmentRules::default(),
        };
        Fixture {
            dir,
            v: StorePassphrases::new(Arc::new(store), Arc::new(key), policy),
            subject: PassphraseSubject {
                account_id: Some(id),
                number: "+16502530000".into(),
            },
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[tokio::test]
    async fn enrolment_gives_the_hint_and_digits_mode() {
        let f = fixture("hint", Some("two four six two"));
        match f.v.enrolment(&f.subject, at(0)).await.unwrap() {
            Enrolment::Ready { hint, digits } => {
                assert_eq!(&*hint, "two four six two");
                assert!(digits);
            }
            other => panic!("{other:?}"),
        }
        let none = fixture("none", None);
        assert!(matches!(
            none.v.enrolment(&none.subject, at(0)).await.unwrap(),
            Enrolment::NotEnrolled
        ));
        let nobody = PassphraseSubject {
            account_id: None,
            number: "+16502530000".into(),
        };
        assert!(matches!(
            f.v.enrolment(&nobody, at(0)).await.unwrap(),
            Enrolment::NotEnrolled
        ));
    }

    #[tokio::test]
    async fn digit_passphrases_have_their_own_gate() {
        // The fixture's gates: words 0.5, digits 0.3.
        let f = fixture("gate", Some("2 4 6 2"));
        let v = |t: &'static str, c: f32, s: u64| {
            let f = &f;
            async move { f.v.verify(&f.subject, t, c, at(s)).await.unwrap() }
        };
        assert_eq!(v("2462", 0.4, 0).await, PassphraseVerdict::Match);
        assert_eq!(
            v("two four six two", 0.29, 1).await,
            PassphraseVerdict::LowConfidence
        );
        assert_eq!(v("2 4 6", 0.9, 2).await, PassphraseVerdict::NoMatch);
        let w = fixture("gate-words", Some("white horse"));
        let check = |t: &'static str, c: f32| {
            let w = &w;
            async move { w.v.verify(&w.subject, t, c, at(0)).await.unwrap() }
        };
        assert_eq!(
            check("white horse", 0.4).await,
            PassphraseVerdict::LowConfidence
        );
        assert_eq!(check("White horse.", 0.5).await, PassphraseVerdict::Match);
    }

    #[tokio::test]
    async fn whole_phrase_with_confidence_matches_and_failures_lock_across_checks() {
        let f = fixture("lock", Some("purple elephant dance"));
        let v = |t: &'static str, c: f32, s: u64| {
            let f = &f;
            async move { f.v.verify(&f.subject, t, c, at(s)).await.unwrap() }
        };
        assert_eq!(
            v("Purple elephant, dance!", 0.9, 0).await,
            PassphraseVerdict::Match
        );
        assert_eq!(
            v("purple elephant", 0.9, 1).await,
            PassphraseVerdict::NoMatch
        );
        assert_eq!(
            v("purple elephant dance", 0.3, 2).await,
            PassphraseVerdict::LowConfidence
        );
        // Two failures; a match clears them.
        assert_eq!(
            v("uh my passphrase is purple elephant dance", 0.8, 3).await,
            PassphraseVerdict::Match
        );
        for s in 10..13 {
            assert_eq!(
                v("purple elephant dunce", 0.9, s).await,
                PassphraseVerdict::NoMatch
            );
        }
        // Three failures within the hour: locked, even for the right phrase.
        assert_eq!(
            v("purple elephant dance", 0.9, 20).await,
            PassphraseVerdict::Locked
        );
        assert!(matches!(
            f.v.enrolment(&f.subject, at(20)).await.unwrap(),
            Enrolment::Locked
        ));
        // Once the failures leave the window, the factor opens again.
        assert_eq!(
            v("purple elephant dance", 0.9, 3700).await,
            PassphraseVerdict::Match
        );
    }

    #[tokio::test]
    async fn parallel_guesses_get_no_more_than_the_limit() {
        let f = std::sync::Arc::new(fixture("race", Some("purple elephant dance")));
        // 12 wrong checks at once: with 3 allowed, exactly 3 are judged and
        // the rest are locked out. (A right guess among them would clear the
        // count, as a pass should, and let later ones be judged: so none.)
        let mut tasks = Vec::new();
        for i in 0..12 {
            let f = f.clone();
            tasks.push(tokio::spawn(async move {
                f.v.verify(&f.subject, "nope", 0.9, at(i)).await.unwrap()
            }));
        }
        let mut judged = 0;
        for t in tasks {
            if t.await.unwrap() != PassphraseVerdict::Locked {
                judged += 1;
            }
        }
        assert_eq!(judged, 3, "{judged} guesses were judged");
        // And the right phrase after them finds the factor locked.
        let v = f.v.verify(&f.subject, "purple elephant dance", 0.9, at(12));
        assert_eq!(v.await.unwrap(), PassphraseVerdict::Locked);
    }
}
