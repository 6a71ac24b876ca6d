//! The descriptor limit (issue 16 item 5): every call holds an RTP socket
//! and every TCP peer a connection, and the usual soft limit of 1,024 ran
//! out under 1,100 idle connections. `serve` raises the soft limit to the
//! hard one at start and says what it got, and whether it covers the
//! configured caps.

use tracing::{info, warn};

use crate::config::LimitsConfig;

/// Raise RLIMIT_NOFILE's soft limit to its hard limit; log the result and
/// warn when calls plus connections could still exhaust it.
pub(super) fn raise(limits: &LimitsConfig) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the rlimit struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        warn!(error = %std::io::Error::last_os_error(), "cannot read the descriptor limit");
        return;
    }
    let before = rl.rlim_cur;
    if rl.rlim_cur < rl.rlim_max {
        let want = libc::rlimit {
            rlim_cur: rl.rlim_max,
            rlim_max: rl.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            rl = want;
        } else {
            warn!(error = %std::io::Error::last_os_error(), "cannot raise the descriptor limit");
        }
    }
    // One descriptor per call (RTP) and per TCP connection, plus a margin
    // for the database, logs, listeners and HTTP.
    let needed = u64::from(limits.max_calls) + u64::from(limits.tcp.max_connections) + 128;
    let now: u64 = rl.rlim_cur;
    info!(before, limit = now, "descriptor limit (RLIMIT_NOFILE)");
    if now < needed {
        warn!(
            limit = now,
            needed,
            "descriptor limit below limits.max_calls + limits.tcp.max_connections + 128: raise it (ulimit -n, LimitNOFILE=) or lower those caps"
        );
    }
}
