//! The Docker side of tier 3: is there an engine, the locally built images, and what the engine
//! knows about a container (its limits, whether it was OOM-killed, its peak memory).
//!
//! No image is pulled: the sidecar image is built from `proxy/Dockerfile` by
//! `scripts/build-proxy-image`; the Debian base image (Prometheus, socat, openssl, curl) by
//! `scripts/build-base-image` with debootstrap, cached by a tag derived from its package list; the
//! demo app's and Prometheus's images from `e2e/images/*.Dockerfile` on that base.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Set (to anything but "0") to make a missing Docker engine a test failure instead of a skip.
/// `.ci/run` sets it, so CI can never pass by skipping.
pub const REQUIRE_ENV: &str = "MESHSCRAPE_E2E_REQUIRE_DOCKER";

/// The images a pod is made of.
#[derive(Debug)]
pub struct Images {
    /// Debian bookworm with prometheus, socat, openssl and curl.
    pub base: String,
    /// The FROM-scratch sidecar image, built from this checkout.
    pub proxy: String,
    /// The demo app on 127.0.0.1:8080.
    pub app: String,
    /// Prometheus 2.42 (Debian bookworm's), reading /etc/prometheus/prometheus.yml.
    pub prometheus: String,
    /// Prometheus 3.5 LTS, the same way.
    pub prometheus3: String,
}

/// The images, built once per test process (`demo_app`: the test-built demo-app binary); `None`
/// (after printing why) when this machine cannot run containers and the tests are not required to.
pub fn images_or_skip(demo_app: &str) -> Option<&'static Images> {
    static IMAGES: OnceLock<Result<Images, String>> = OnceLock::new();
    match IMAGES.get_or_init(|| build_images(Path::new(demo_app))) {
        Ok(images) => Some(images),
        Err(reason) if std::env::var(REQUIRE_ENV).is_ok_and(|v| v != "0") => {
            panic!("{REQUIRE_ENV} is set, so the container tests must run, but {reason}")
        }
        Err(reason) => {
            eprintln!("SKIPPED: {reason}");
            None
        }
    }
}

/// Builds (or finds cached) every image a pod and its Prometheus need; the error says what is
/// missing and how to get it. Progress of the long steps goes to stderr.
pub fn build_images(demo_app: &Path) -> Result<Images, String> {
    let info = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output();
    match info {
        Err(e) => {
            return Err(format!(
                "no docker command ({e}); run scripts/setup-debian --with-docker as root"
            ));
        }
        Ok(o) if !o.status.success() => {
            return Err(format!(
                "no Docker engine answers ({}); run scripts/setup-debian --with-docker as root to \
                    install and start dockerd",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("docker info failed")
                    .trim()
            ));
        }
        Ok(_) => {}
    }
    let root = crate::root();
    // Progress (debootstrap, the release build) goes to the test's stderr.
    let base = Command::new(root.join("scripts/build-base-image"))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("scripts/build-base-image: {e}"))?;
    if !base.status.success() {
        return Err("scripts/build-base-image failed (its message is above)".into());
    }
    let proxy = "meshscrape-proxy:e2e".to_string();
    let built = Command::new(root.join("scripts/build-proxy-image"))
        .arg(&proxy)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| format!("scripts/build-proxy-image: {e}"))?;
    if !built.success() {
        return Err("scripts/build-proxy-image failed (its message is above)".into());
    }
    let base = String::from_utf8_lossy(&base.stdout).trim().to_string();
    let app = build_on_base(&base, "demo-app", Some(demo_app))?;
    let prometheus = build_on_base(&base, "prometheus", None)?;
    let v3 = crate::prometheus3_binary();
    if !v3.is_file() {
        return Err(format!(
            "no Prometheus 3.5 at {}; run scripts/fetch-prometheus3 (scripts/setup-debian does)",
            v3.display()
        ));
    }
    let prometheus3 = build_on_base(&base, "prometheus3", Some(&v3))?;
    Ok(Images { base, proxy, app, prometheus, prometheus3 })
}

/// `docker build` of `e2e/images/NAME.Dockerfile` on `base`, with `file` as the whole context.
fn build_on_base(base: &str, name: &str, file: Option<&Path>) -> Result<String, String> {
    let context =
        std::env::temp_dir().join(format!("meshscrape-e2e-context-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&context);
    std::fs::create_dir_all(&context).map_err(|e| format!("{}: {e}", context.display()))?;
    if let Some(file) = file {
        let to = context.join(file.file_name().unwrap_or_default());
        std::fs::copy(file, &to)
            .map_err(|e| format!("copying {} into the build context: {e}", file.display()))?;
    }
    let tag = format!("meshscrape-e2e-{name}:dev");
    let dockerfile = crate::root().join(format!("e2e/images/{name}.Dockerfile"));
    let out = Command::new("docker")
        .args(["build", "--quiet", "--build-arg", &format!("BASE={base}"), "-t", &tag, "-f"])
        .arg(&dockerfile)
        .arg(&context)
        .output()
        .map_err(|e| format!("docker build: {e}"))?;
    let _ = std::fs::remove_dir_all(&context);
    if !out.status.success() {
        return Err(format!(
            "docker build of {} failed: {}",
            dockerfile.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(tag)
}

/// `docker inspect --format TEMPLATE ID`, trimmed.
pub fn inspect(id: &str, template: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "--format", template, id])
        .output()
        .expect("docker inspect runs");
    assert!(out.status.success(), "docker inspect {id}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The container's peak memory use in bytes as its cgroup recorded it (v1 `max_usage_in_bytes`,
/// v2 `memory.peak`), when this host exposes it.
pub fn peak_memory(id: &str) -> Option<u64> {
    [
        format!("/sys/fs/cgroup/memory/docker/{id}/memory.max_usage_in_bytes"),
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.peak"),
        format!("/sys/fs/cgroup/docker/{id}/memory.peak"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse().ok())
}

/// A Kubernetes memory quantity ("15Mi", "64M", "1Gi", "1048576") in bytes, as Docker takes it.
pub fn memory_bytes(quantity: &str) -> Result<i64, String> {
    meshscrape_common::names::quantity_bytes(quantity)
        .and_then(|b| i64::try_from(b).ok())
        .ok_or_else(|| {
            format!("memory quantity {quantity:?} is not a number with a Ki/Mi/Gi/k/M/G suffix")
        })
}

/// A Kubernetes CPU quantity ("100m", "0.5", "2") in Docker's NanoCPUs.
pub fn nano_cpus(quantity: &str) -> Result<i64, String> {
    let (number, scale) = match quantity.strip_suffix('m') {
        Some(milli) => (milli, 1e6),
        None => (quantity, 1e9),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("cpu quantity {quantity:?} is not a number of cores or millicores"))?;
    Ok((n * scale) as i64)
}

/// The admission webhook's FROM-scratch image, built by `scripts/build-webhook-image` (only the
/// tests that run the webhook need it).
pub fn webhook_image() -> Result<String, String> {
    let tag = "meshscrape-webhook:e2e".to_string();
    let built = Command::new(crate::root().join("scripts/build-webhook-image"))
        .arg(&tag)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| format!("scripts/build-webhook-image: {e}"))?;
    if !built.success() {
        return Err("scripts/build-webhook-image failed (its message is above)".into());
    }
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_convert_as_kubernetes_reads_them() {
        assert_eq!(memory_bytes("15Mi"), Ok(15 * 1024 * 1024));
        assert_eq!(memory_bytes("64M"), Ok(64_000_000));
        assert_eq!(memory_bytes("1048576"), Ok(1_048_576));
        assert!(memory_bytes("15 MiB").is_err());
        assert_eq!(nano_cpus("100m"), Ok(100_000_000));
        assert_eq!(nano_cpus("0.5"), Ok(500_000_000));
        assert_eq!(nano_cpus("2"), Ok(2_000_000_000));
        assert!(nano_cpus("lots").is_err());
    }
}
