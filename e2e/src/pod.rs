//! A pod made of containers, as a kubelet makes one, and a Prometheus beside it: shared by the
//! container tests (`tests/e2e/containers.rs`) and the local demo (`meshscrape-demo`).
//!
//! A pod is a pause container owning a network namespace that the app, the mesh gate and the
//! sidecar join (`--network container:<pause>`). The sidecar runs the locally built image with the
//! generated ConfigMap mounted where the generated Deployment mounts it, with that Deployment's
//! args, user, read-only root, dropped capabilities and resource limits. The mesh gate stands in
//! for Istio's STRICT inbound policy: the app listens on loopback only, and from outside the pod
//! its port speaks mTLS alone (socat, client certificate required).
//!
//! Every step returns an error that says what failed; none panics, so the demo can report it and
//! clean up.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testcontainers::core::{AccessMode, ExecCommand, Mount};
use testcontainers::runners::AsyncRunner as _;
use testcontainers::{ContainerAsync, GenericImage, ImageExt as _};

use crate::docker::{self, Images};
use crate::{Example, ScrapeJob, prometheus_yml};

/// The service name the gate's certificate carries (the mesh's identity for the app).
pub const APP_HOST: &str = "identity-service.tools.svc";

/// A local image by reference (`name:tag`).
pub fn image(reference: &str) -> GenericImage {
    let (name, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
    GenericImage::new(name, tag)
}

/// A folder of files on the host, bind-mounted into containers; removed when dropped.
#[derive(Debug)]
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("meshscrape-e2e-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::create_dir_all(&dir);
        Scratch(dir)
    }

    /// Writes `contents` at `rel` (folders made as needed) and returns the file's path.
    pub fn file(&self, rel: &str, contents: &str) -> String {
        let path = self.0.join(rel);
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(&path, contents);
        path.display().to_string()
    }

    /// The folder at `rel`, made if missing.
    pub fn dir(&self, rel: &str) -> String {
        let path = self.0.join(rel);
        let _ = std::fs::create_dir_all(&path);
        path.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One pod. Fields drop in declaration order, so the pause container, whose namespace the others
/// share, goes last.
pub struct Pod {
    pub ip: IpAddr,
    pub sidecar: ContainerAsync<GenericImage>,
    pub gate: Option<ContainerAsync<GenericImage>>,
    pub app: ContainerAsync<GenericImage>,
    pub pause: ContainerAsync<GenericImage>,
}

/// Starts a pod on `network`: pause, app, optionally the mTLS gate (certificates in `certs`), and
/// the sidecar exactly as the generated Deployment describes its container.
pub async fn start_pod(
    images: &Images,
    example: &Example,
    scratch: &Scratch,
    network: &str,
    gate: bool,
) -> Result<Pod, String> {
    let pause = image(&images.base)
        .with_cmd(["sleep", "infinity"])
        .with_network(network)
        .with_mount(Mount::bind_mount(scratch.dir("certs"), "/certs"))
        .start()
        .await
        .map_err(|e| format!("starting the pod's pause container: {e}"))?;
    let ip = pause.get_bridge_ip_address().await.map_err(|e| format!("the pod's IP: {e}"))?;
    let netns = format!("container:{}", pause.id());

    // The app: loopback only (the image's default), like an app whose sole inbound path is the
    // mesh's proxy.
    let app = image(&images.app)
        .with_network(&netns)
        .start()
        .await
        .map_err(|e| format!("starting the app container: {e}"))?;

    let gate = if gate {
        issue_certificates(&pause).await?;
        // Istio's STRICT inbound: the app's port, seen from outside the pod, completes a TLS
        // handshake only with a client certificate signed by the mesh CA.
        let listen = format!(
            "openssl-listen:8080,bind={ip},reuseaddr,fork,cert=/certs/gate.crt,key=/certs/gate.key,cafile=/certs/ca.crt,verify=1"
        );
        Some(
            image(&images.base)
                .with_cmd(["socat".to_string(), listen, "tcp:127.0.0.1:8080".into()])
                .with_network(&netns)
                .with_mount(
                    Mount::bind_mount(scratch.dir("certs"), "/certs")
                        .with_access_mode(AccessMode::ReadOnly),
                )
                .start()
                .await
                .map_err(|e| format!("starting the mesh gate: {e}"))?,
        )
    } else {
        None
    };

    let sidecar = start_sidecar(images, example, scratch, &netns).await?;
    let pod = Pod { ip, sidecar, gate, app, pause };
    wait_ready(&format!("http://{}:9090/-/ready", pod.ip), Duration::from_secs(30)).await?;
    Ok(pod)
}

/// The sidecar container, with everything the generated Deployment says about it.
pub async fn start_sidecar(
    images: &Images,
    example: &Example,
    scratch: &Scratch,
    netns: &str,
) -> Result<ContainerAsync<GenericImage>, String> {
    let c = example.sidecar_container();
    let missing = |what: &str| format!("the generated sidecar container has no {what}");
    let limits =
        c.resources.as_ref().and_then(|r| r.limits.as_ref()).ok_or_else(|| missing("limits"))?;
    let memory = limits.get("memory").ok_or_else(|| missing("memory limit"))?;
    let cpu = limits.get("cpu").ok_or_else(|| missing("CPU limit"))?;
    let memory = docker::memory_bytes(&memory.0)?;
    let cpus = docker::nano_cpus(&cpu.0)?;
    let sc = c.security_context.as_ref().ok_or_else(|| missing("securityContext"))?;
    let user = format!(
        "{}:{}",
        sc.run_as_user.ok_or_else(|| missing("runAsUser"))?,
        sc.run_as_group.ok_or_else(|| missing("runAsGroup"))?
    );
    let mount_path = c
        .volume_mounts
        .as_ref()
        .and_then(|m| m.first())
        .map(|m| m.mount_path.clone())
        .ok_or_else(|| missing("config volume"))?;
    // The ConfigMap, as the kubelet projects it: one file per key, through `..data`.
    configmap_update(scratch, &example.sidecar_yaml)?;

    let mut request = image(&images.proxy)
        .with_cmd(c.args.clone().unwrap_or_default())
        .with_network(netns)
        .with_user(user)
        .with_readonly_rootfs(sc.read_only_root_filesystem.unwrap_or(false))
        .with_mount(
            Mount::bind_mount(scratch.0.join("config").display().to_string(), mount_path.as_str())
                .with_access_mode(AccessMode::ReadOnly),
        )
        .with_host_config_modifier(move |hc| {
            hc.memory = Some(memory);
            hc.memory_swap = Some(memory); // no swap: the limit is the limit
            hc.nano_cpus = Some(cpus);
        });
    for cap in sc.capabilities.as_ref().and_then(|c| c.drop.clone()).unwrap_or_default() {
        request = request.with_cap_drop(cap);
    }
    if sc.allow_privilege_escalation == Some(false) {
        request = request.with_security_opt("no-new-privileges");
    }
    request.start().await.map_err(|e| format!("starting the sidecar container: {e}"))
}

/// Writes the sidecar's ConfigMap into `config/` as the kubelet does, first and on every update:
/// the key `sidecar.yaml` is a symlink to `..data/sidecar.yaml`, and an update writes a new
/// version folder and renames a new `..data` symlink over the old one (never writing the file
/// the key's path names).
pub fn configmap_update(scratch: &Scratch, yaml: &str) -> Result<(), String> {
    static VERSION: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = VERSION.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = scratch.0.join("config");
    let version = format!("..2026_12_03_00_00_{n:02}.1");
    scratch.file(&format!("config/{version}/sidecar.yaml"), yaml);
    let io = |e: std::io::Error| format!("updating the ConfigMap folder {}: {e}", dir.display());
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&version, &tmp).map_err(io)?;
    std::fs::rename(&tmp, dir.join("..data")).map_err(io)?;
    if std::fs::symlink_metadata(dir.join("sidecar.yaml")).is_err() {
        std::os::unix::fs::symlink("..data/sidecar.yaml", dir.join("sidecar.yaml")).map_err(io)?;
    }
    Ok(())
}

/// A mesh CA, the gate's server certificate for APP_HOST, and an in-mesh client's certificate.
async fn issue_certificates(pause: &ContainerAsync<GenericImage>) -> Result<(), String> {
    let script = format!(
        "set -e; cd /certs
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=mesh-ca -keyout ca.key -out ca.crt
        for who in gate client; do
          openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=$who -keyout $who.key -out $who.csr
        done
        printf 'subjectAltName=DNS:{APP_HOST}\\n' > gate.ext
        printf 'subjectAltName=URI:spiffe://cluster.local/ns/tools/sa/client\\n' > client.ext
        for who in gate client; do
          openssl x509 -req -in $who.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile $who.ext -out $who.crt
        done
        chmod 644 *.key"
    );
    match exec(pause, &["sh", "-c", &script]).await? {
        (Some(0), _, _) => Ok(()),
        (_, _, err) => Err(format!("issuing the mesh certificates failed: {err}")),
    }
}

/// Runs a command in a container; returns its exit code, stdout and stderr.
pub async fn exec(
    container: &ContainerAsync<GenericImage>,
    cmd: &[&str],
) -> Result<(Option<i64>, String, String), String> {
    let failed = |e: testcontainers::TestcontainersError| format!("docker exec {cmd:?}: {e}");
    let mut result = container.exec(ExecCommand::new(cmd.iter().copied())).await.map_err(failed)?;
    let out = String::from_utf8_lossy(&result.stdout_to_vec().await.map_err(failed)?).into_owned();
    let err = String::from_utf8_lossy(&result.stderr_to_vec().await.map_err(failed)?).into_owned();
    Ok((result.exit_code().await.map_err(failed)?, out, err))
}

/// Waits until `url` answers 200, for at most `limit`.
pub async fn wait_ready(url: &str, limit: Duration) -> Result<(), String> {
    let started = Instant::now();
    loop {
        match meshscrape_verify::fetch::get(url, &[], Duration::from_secs(2), 4096).await {
            Ok(f) if f.status == 200 => return Ok(()),
            other if started.elapsed() > limit => {
                return Err(format!(
                    "{url} not ready after {limit:?}: {}",
                    match other {
                        Ok(f) => f.status.to_string(),
                        Err(e) => e.to_string(),
                    }
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A Prometheus in a container of its own on `network`, with `jobs` (and the mesh certificates
/// mounted at /certs, for tests that try the gate from there); its container and URL. With
/// `publish`, its port is also published on 127.0.0.1 of this machine at that port (loopback
/// only: a demo's Prometheus is for the person at this machine).
pub async fn start_prometheus(
    prometheus_image: &str,
    network: &str,
    scratch: &Scratch,
    jobs: &[ScrapeJob],
    publish: Option<u16>,
) -> Result<(ContainerAsync<GenericImage>, String), String> {
    let config = scratch.file("prometheus/prometheus.yml", &prometheus_yml(jobs));
    let config_dir =
        Path::new(&config).parent().map(|p| p.display().to_string()).unwrap_or_default();
    let prom = image(prometheus_image)
        .with_network(network)
        .with_mount(
            Mount::bind_mount(config_dir, "/etc/prometheus").with_access_mode(AccessMode::ReadOnly),
        )
        .with_mount(
            Mount::bind_mount(scratch.dir("certs"), "/certs")
                .with_access_mode(AccessMode::ReadOnly),
        )
        .with_host_config_modifier(move |hc| {
            if let Some(port) = publish {
                let binding = testcontainers::bollard::models::PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(port.to_string()),
                };
                hc.port_bindings = Some(std::collections::HashMap::from([(
                    "9090/tcp".to_string(),
                    Some(vec![binding]),
                )]));
            }
        })
        .start()
        .await
        .map_err(|e| format!("starting the Prometheus container: {e}"))?;
    let ip = prom.get_bridge_ip_address().await.map_err(|e| format!("Prometheus's IP: {e}"))?;
    let url = format!("http://{ip}:9090");
    wait_ready(&format!("{url}/-/ready"), Duration::from_secs(60)).await?;
    Ok((prom, url))
}

/// A Docker network name of this process's own.
pub fn network_name(what: &str) -> String {
    format!("meshscrape-e2e-{}-{what}", std::process::id())
}
