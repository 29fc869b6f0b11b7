//! Live reload: on SIGHUP, and when the config file's content changes, the sidecar reads its
//! configuration again, validates all of it, and puts it in force, or refuses it whole and keeps
//! serving the one it has.
//!
//! The file is watched by reading it, through its path, every couple of seconds and comparing
//! what it holds, not by inotify: a ConfigMap volume replaces a file by swapping the `..data`
//! symlink its path goes through, which never touches the file a watch was set on (the failure
//! kube-rbac-proxy's users met with their client CA). Reading a small file is a few microseconds,
//! and the kubelet takes a minute or so to bring a ConfigMap change to the pod anyway.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meshscrape_common::{ConfigError, ProxyConfig, ProxyOverrides};
use tokio::signal::unix::Signal;

use crate::App;
use crate::app::config_hash;

/// How often the file is read to see whether it changed.
pub const POLL: Duration = Duration::from_secs(2);

/// What the file held when last looked at: a hash of its bytes, or why it could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Bytes(u64),
    Unreadable(std::io::ErrorKind),
}

fn look(path: &std::path::Path) -> Seen {
    match std::fs::read(path) {
        Ok(bytes) => {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            Seen::Bytes(h)
        }
        Err(e) => Seen::Unreadable(e.kind()),
    }
}

/// The outcome of one reload.
#[derive(Debug)]
pub enum Reloaded {
    /// In force now; these keys changed but wait for a restart.
    Applied { restart_required: Vec<&'static str> },
    /// Refused; the configuration in force stays.
    Refused(ConfigError),
}

/// Reloads `app`'s configuration from its file and flags (flags still win over the file).
pub struct Reloader {
    app: Arc<App>,
    path: Option<PathBuf>,
    overrides: ProxyOverrides,
    seen: Option<Seen>,
}

impl Reloader {
    /// Watches `path` (if any) from what it holds now.
    pub fn new(app: Arc<App>, path: Option<PathBuf>, overrides: ProxyOverrides) -> Self {
        let seen = path.as_deref().map(look);
        Reloader { app, path, overrides, seen }
    }

    /// Reads and validates the configuration and, if it is valid, puts it in force. Logs the
    /// outcome and counts it in `/-/metrics`.
    pub fn reload(&mut self, why: &str) -> Reloaded {
        if let Some(path) = &self.path {
            self.seen = Some(look(path));
        }
        match ProxyConfig::load(self.path.as_deref(), &self.overrides) {
            Ok(config) => {
                let hash = config_hash(&config);
                let restart_required = self.app.reload(config);
                tracing::info!(trigger = why, %hash, "configuration reloaded");
                if !restart_required.is_empty() {
                    tracing::warn!(
                        keys = ?restart_required,
                        "changed settings that take effect only when the sidecar restarts; the \
                            old values stay in force until then"
                    );
                }
                Reloaded::Applied { restart_required }
            }
            Err(e) => {
                self.app.metrics().reload_failed();
                tracing::error!(
                    trigger = why,
                    "refused the new configuration, still serving the \
                    previous one: {e:#}"
                );
                Reloaded::Refused(e)
            }
        }
    }

    /// Reloads if the file holds something other than when last looked at.
    pub fn poll(&mut self) -> Option<Reloaded> {
        let path = self.path.as_deref()?;
        let now = look(path);
        if self.seen.as_ref() == Some(&now) {
            return None;
        }
        Some(self.reload("file changed"))
    }
}

/// Reloads on every SIGHUP, and when the file changes, looked at every `every`.
pub async fn watch(mut reloader: Reloader, every: Duration, mut hangup: Signal) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(()) = hangup.recv() => {
                reloader.reload("SIGHUP");
            }
            _ = tick.tick() => {
                reloader.poll();
            }
        }
    }
}
