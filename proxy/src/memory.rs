//! The memory limit the sidecar runs under, read from its cgroup, against what its limits need
//! (`meshscrape_common::proxy::sizing`). gen refuses limits the generated memory limit cannot
//! hold; this catches the rest: flags given by hand, or a limit lowered in the Deployment.

use std::path::Path;

use meshscrape_common::proxy::{Limits, sizing};

/// Where the container's memory limit is: cgroup v2, then v1.
const LIMIT_FILES: [&str; 2] =
    ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"];

/// The memory limit in bytes from the first of `files` that holds one; `None` when there is
/// none, it says `max`, or it is v1's "no limit" (a huge number).
pub fn cgroup_limit(files: &[&Path]) -> Option<u64> {
    let text = files.iter().find_map(|f| std::fs::read_to_string(f).ok())?;
    let bytes: u64 = text.trim().parse().ok()?;
    // cgroup v1 writes "no limit" as the largest page-aligned i64.
    (bytes < 1 << 60).then_some(bytes)
}

/// A warning when `limit` bytes cannot hold what `limits` need, in the words a person acts on.
pub fn check(limits: &Limits, limit: u64) -> Option<String> {
    let needed = sizing::limit_for(limits);
    (needed > limit).then(|| {
        let mib = |b: u64| b.div_ceil(1 << 20);
        format!(
            "{} requests in flight and {} connections need a memory limit of about {} MiB, but \
                this container's is {} MiB: a burst of slow scrapes could get it OOM-killed; \
                lower limits.maxInFlight or raise the memory limit",
            limits.max_in_flight,
            limits.max_connections,
            mib(needed),
            mib(limit),
        )
    })
}

/// Logs the warning if the cgroup's limit is too small for `limits`.
pub fn warn_if_too_small(limits: &Limits) {
    let files = LIMIT_FILES.map(Path::new);
    if let Some(limit) = cgroup_limit(&files)
        && let Some(warning) = check(limits, limit)
    {
        tracing::warn!(limit_bytes = limit, "{warning}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(in_flight: u64, conns: u64) -> Limits {
        Limits {
            max_in_flight: in_flight,
            max_connections: conns,
            max_request_head_bytes: 8192,
            max_part_bytes: 1 << 20,
        }
    }

    #[test]
    fn reads_v2_then_v1_and_ignores_no_limit() {
        let dir = std::env::temp_dir().join(format!("meshscrape-cgroup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (v2, v1) = (dir.join("memory.max"), dir.join("memory.limit_in_bytes"));
        std::fs::write(&v1, "15728640\n").unwrap();
        assert_eq!(cgroup_limit(&[&v2, &v1]), Some(15 << 20), "v1 when v2 is absent");
        std::fs::write(&v2, "max\n").unwrap();
        assert_eq!(cgroup_limit(&[&v2, &v1]), None, "v2's max is no limit");
        std::fs::write(&v2, "16777216\n").unwrap();
        assert_eq!(cgroup_limit(&[&v2, &v1]), Some(16 << 20));
        std::fs::write(&v1, "9223372036854771712\n").unwrap();
        assert_eq!(cgroup_limit(&[&v1]), None, "v1's page-aligned i64::MAX is no limit");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_defaults_fit_15mi_and_the_old_ones_are_named() {
        assert_eq!(check(&limits(16, 128), 15 << 20), None);
        let warning = check(&limits(32, 256), 15 << 20).expect("too small");
        assert!(
            warning.starts_with(
                "32 requests in flight and 256 connections need a memory limit \
                of about 24 MiB, but this container's is 15 MiB"
            ),
            "{warning}"
        );
    }
}
