//! Live reload: on SIGHUP, and when the config file's content changes, the sidecar reads its
//! configuration again, validates all of it, and puts it in force, or refuses it whole and keeps
//! serving the one it has. The token and certificate files the configuration names are watched
//! the same way: a rotated Secret is a reload.
//!
//! The file is watched by reading it, through its path, every couple of seconds and comparing
//! what it holds, not by inotify: a ConfigMap volume replaces a file by swapping the `..data`
//! symlink its path goes through, which never touches the file a watch was set on (the failure
//! kube-rbac-proxy's users met with their client CA). Reading a small file is a few microseconds,
//! and the kubelet takes a minute or so to bring a ConfigMap change to the pod anyway.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use meshscrape_common::{ProxyConfig, ProxyOverrides};
use tokio::signal::unix::Signal;

use crate::App;
use crate::app::{config_hash, fnv1a};

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
        Ok(bytes) => Seen::Bytes(fnv1a(&bytes)),
        Err(e) => Seen::Unreadable(e.kind()),
    }
}

/// The outcome of one reload.
#[derive(Debug)]
pub enum Reloaded {
    /// In force now; these keys changed but wait for a restart.
    Applied { restart_required: Vec<&'static str> },
    /// Refused, for this reason (the file, the key, what is wrong); the configuration in force
    /// stays.
    Refused(String),
}

/// Reloads `app`'s configuration from its file and flags (flags still win over the file).
pub struct Reloader {
    app: Arc<App>,
    path: Option<PathBuf>,
    overrides: ProxyOverrides,
    /// Every file the configuration in force depends on (its own file, the token, the TLS
    /// certificate, key and client CA), as last looked at.
    seen: Vec<(PathBuf, Seen)>,
}

/// The files a configuration reads: its own and those it names.
fn watched(path: Option<&Path>, config: &ProxyConfig) -> Vec<PathBuf> {
    let tls = config.tls.iter().flat_map(|t| {
        [Some(&t.cert_file), Some(&t.key_file), t.client_ca_file.as_ref()].into_iter().flatten()
    });
    path.into_iter()
        .map(Path::to_path_buf)
        .chain(config.auth.bearer_token_file.iter().cloned())
        .chain(tls.cloned())
        .collect()
}

impl Reloader {
    /// Watches the file at `path` (if any) and the files the configuration in force names, from
    /// what they hold now.
    pub fn new(app: Arc<App>, path: Option<PathBuf>, overrides: ProxyOverrides) -> Self {
        let seen = watched(path.as_deref(), &app.config())
            .into_iter()
            .map(|p| {
                let now = look(&p);
                (p, now)
            })
            .collect();
        Reloader { app, path, overrides, seen }
    }

    /// Reads and validates the configuration and the files it names and, if all are valid,
    /// puts it in force. Logs the outcome and counts it in `/-/metrics`.
    pub fn reload(&mut self, why: &str) -> Reloaded {
        let outcome = ProxyConfig::load(self.path.as_deref(), &self.overrides)
            .map_err(|e| format!("{e:#}"))
            .and_then(|config| {
                let files = watched(self.path.as_deref(), &config);
                let hash = config_hash(&config);
                let restart_required = self.app.reload(config)?;
                Ok((files, hash, restart_required))
            });
        match outcome {
            Ok((files, hash, restart_required)) => {
                self.seen = files
                    .into_iter()
                    .map(|p| {
                        let now = look(&p);
                        (p, now)
                    })
                    .collect();
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
                // Looked at again, so the same broken state is not refused again every poll.
                for (p, seen) in &mut self.seen {
                    *seen = look(p);
                }
                self.app.metrics().reload_failed();
                tracing::error!(
                    trigger = why,
                    "refused the new configuration, still serving the \
                    previous one: {e}"
                );
                Reloaded::Refused(e)
            }
        }
    }

    /// Reloads if any watched file holds something other than when last looked at.
    pub fn poll(&mut self) -> Option<Reloaded> {
        let changed = self.seen.iter().find(|(p, seen)| look(p) != *seen)?;
        let why = if Some(&changed.0) == self.path.as_ref() {
            "file changed".to_string()
        } else {
            format!("{} changed", changed.0.display())
        };
        Some(self.reload(&why))
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
