//! The process's open-file limit.
//!
//! The layer store keeps each large blob in table files of its own (bulk loads), so a store
//! of thousands of blobs has thousands of files; RocksDB opens them as reads need them, up to
//! a budget it derives from this limit (`strata-kv`). The soft limit is often 1,024 (many
//! shells, systemd's default for services) while the hard one is far higher. Like Go programs
//! (since Go 1.19), containerd and dockerd, strata raises its soft limit to the hard one at
//! start. RUN steps do not inherit it: their runtime spec sets the limit BuildKit gives them.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises the soft limit on open files to the hard limit. Call at the start of `main`, once
/// logging is set up and before any store opens; failing leaves the limit as it was (and
/// says so at debug level).
pub fn raise_open_files_limit() {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::debug!(soft, hard, error = %e, "cannot raise the open-file limit");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "cannot read the open-file limit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        raise_open_files_limit();
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (hard, hard));
    }
}
