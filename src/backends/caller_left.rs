//! The inbound caller hung up while a code was on its way: the flow sets it,
//! the code service and its channels read it. A code call ringing or
//! talking for a caller who is gone is torn down (its delivery `cancelled`)
//! and no fallback channel is tried; a message already handed to a gateway
//! or relay finishes and is recorded as it ended.

use std::sync::Arc;

use tokio::sync::watch;

/// Shared by the call's `send_code` step and the send it started.
#[derive(Clone, Debug)]
pub struct CallerLeft(Arc<watch::Sender<bool>>);

impl Default for CallerLeft {
    fn default() -> Self {
        CallerLeft(Arc::new(watch::Sender::new(false)))
    }
}

/// Two handles are equal when they are the same signal (so requests that
/// carry one still compare field by field).
impl PartialEq for CallerLeft {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl CallerLeft {
    /// The caller hung up.
    pub fn set(&self) {
        self.0.send_replace(true);
    }

    /// Whether the caller hung up.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the caller hung up (never, while they stay).
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the wait cannot fail.
        let _ = rx.wait_for(|left| *left).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_ends_when_set_and_clones_share_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let left = CallerLeft::default();
        let other = left.clone();
        assert_eq!(left, other);
        assert_ne!(left, CallerLeft::default());
        assert!(!left.is_set());
        rt.block_on(async {
            let waiting = tokio::spawn({
                let l = left.clone();
                async move { l.wait().await }
            });
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            assert!(!waiting.is_finished());
            other.set();
            tokio::time::timeout(std::time::Duration::from_secs(2), waiting)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("{e}"));
        });
        assert!(left.is_set());
    }
}
