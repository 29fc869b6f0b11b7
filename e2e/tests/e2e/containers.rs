//! Tier 3: the claim, shown the way it runs (the pod itself is `meshscrape_e2e::pod`). A pod is a pause container owning a network namespace
//! that the app, the mesh gate and the sidecar join (`--network container:<pause>`), as a kubelet
//! does. The sidecar runs the locally built image with the generated ConfigMap mounted where the
//! generated Deployment mounts it, with that Deployment's args, user, read-only root, dropped
//! capabilities and resource limits (15Mi, 100m). The mesh gate stands in for Istio's STRICT
//! inbound policy: the app listens on loopback only, and from outside the pod its port speaks
//! mTLS alone (socat, client certificate required). Prometheus runs in a container of its own
//! with the scrape job prometheus-operator derives from the generated ServiceMonitor.
//!
//! Needs a Docker engine and root (debootstrap builds the base image once; it is cached by tag).
//! Without them the tests print `SKIPPED:` and pass, unless MESHSCRAPE_E2E_REQUIRE_DOCKER is set,
//! as `.ci/run` does.

use std::path::Path;
use std::time::{Duration, Instant};

use meshscrape_e2e::docker::{self, Images};
use meshscrape_e2e::pod::{
    APP_HOST, Scratch, configmap_update, exec, image, network_name, start_pod, start_sidecar,
    wait_ready,
};
use meshscrape_e2e::{Example, METRIC, ScrapeJob, human, until, verify_cli};
use meshscrape_verify::report::Status;
use meshscrape_verify::{endpoint, fetch, prometheus};
use testcontainers::ImageExt as _;
use testcontainers::runners::AsyncRunner as _;

#[tokio::test]
async fn prometheus_scrapes_a_strict_mtls_pod_through_the_sidecar_and_sees_it_recover() {
    let Some(images) = docker::images_or_skip(env!("CARGO_BIN_EXE_demo-app")) else { return };
    // Today's Prometheus first, then Debian bookworm's, each in a pod of its own.
    for (name, prometheus) in [("mesh3", &images.prometheus3), ("mesh2", &images.prometheus)] {
        eprintln!("{name}: Prometheus image {prometheus}");
        scrape_a_strict_mtls_pod_and_recover(images, prometheus, name).await;
    }
}

async fn scrape_a_strict_mtls_pod_and_recover(images: &Images, prometheus: &str, name: &str) {
    let example = Example::render_fast();
    let scratch = Scratch::new(name);
    let network = network_name(name);
    let pod = start_pod(images, &example, &scratch, &network, true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Prometheus, in its own container: the operator's job for the generated ServiceMonitor, and a
    // second job that tries the app's own port in plaintext, as Prometheus would without the sidecar.
    let mut job = example.job();
    job.target = format!("{}:9090", pod.ip);
    let direct = ScrapeJob {
        name: "app-port-plaintext".into(),
        job: "app-port-plaintext".into(),
        target: format!("{}:8080", pod.ip),
        ..job.clone()
    };
    let (prom, prom_url) = meshscrape_e2e::pod::start_prometheus(
        prometheus,
        &network,
        &scratch,
        &[job.clone(), direct.clone()],
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // 1. The mesh gate. Plaintext to the app's port fails, from the test host and from Prometheus.
    let plain = endpoint::check(
        &format!("http://{}:8080{}", pod.ip, job.path),
        &endpoint::Options::default(),
    )
    .await;
    assert!(
        plain.failed(),
        "a plaintext scrape of the app's port got through the gate:\n{}",
        human(&plain)
    );
    let direct_options = prometheus::Options {
        scrape_pool: Some(direct.name.clone()),
        timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let report = until(&prom_url, &direct_options, true, Duration::from_secs(60)).await;
    assert!(
        report.checks.iter().any(|c| c.name == "health" && c.status == Status::Fail),
        "Prometheus scraped the app's port in plaintext:\n{}",
        human(&report)
    );
    // A TLS client without a mesh certificate is refused too; one with it gets the metrics.
    let https = format!("https://{APP_HOST}:8080{}", job.path);
    let resolve = format!("{APP_HOST}:8080:{}", pod.ip);
    let curl =
        ["curl", "-sS", "--max-time", "5", "--resolve", &resolve, "--cacert", "/certs/ca.crt"];
    let (code, _, err) = exec(&prom, &[&curl[..], &[https.as_str()]].concat())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(code, Some(0), "TLS without a client certificate got through the gate: {err}");
    let (code, out, err) = exec(
        &prom,
        &[
            &curl[..],
            &["--cert", "/certs/client.crt", "--key", "/certs/client.key", https.as_str()],
        ]
        .concat(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, Some(0), "an in-mesh mTLS client was refused by the gate: {err}");
    assert!(out.contains(METRIC), "the gate did not reach the app: {out}");

    // 2. Through the sidecar's excluded port: Prometheus has the target up and the seed's metric.
    let options = job.expecting(&format!("{METRIC}_count"), Default::default());
    let report = until(&prom_url, &options, false, Duration::from_secs(60)).await;
    assert!(!report.failed(), "{}", human(&report));
    assert!(
        report.checks.iter().any(|c| c.name == "metric" && c.status == Status::Pass),
        "{}",
        human(&report)
    );
    let sidecar_url = format!("http://{}:9090{}", pod.ip, job.path);
    let probes = endpoint::Options {
        probes: vec!["/readiness".into(), "/liveness".into()],
        ..Default::default()
    };
    // The verifier's own command lines, as a user would run them, agree.
    let metric = format!("{METRIC}_count");
    let verify_prometheus =
        ["prometheus", "--url", &prom_url, "--job", &job.job, "--expect-metric", &metric];
    let verify_endpoint =
        ["endpoint", &sidecar_url, "--probe", "/readiness", "--probe", "/liveness"];
    let (code, out) = verify_cli(&verify_prometheus).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify_cli(&verify_endpoint).await;
    assert_eq!(code, 0, "{out}");

    // 3. The app stops: 502 on the metrics route, the readiness route fails, the target goes
    //    down and the verifier's verdict is exit 1.
    let started_at = docker::inspect(pod.sidecar.id(), "{{.State.StartedAt}}");
    pod.app.stop().await.expect("stop the app");
    let report = endpoint::check(&sidecar_url, &probes).await;
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.message.as_str())
        .collect();
    assert!(failed.iter().any(|m| m.starts_with("502")), "{}", human(&report));
    let readiness =
        fetch::get(&format!("http://{}:9090/readiness", pod.ip), &[], Duration::from_secs(5), 4096)
            .await
            .unwrap();
    assert_eq!(readiness.status, 502, "the readiness route must fail while the app is down");
    let report = until(&prom_url, &options, true, Duration::from_secs(30)).await;
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.name == "health" && c.status == Status::Fail && c.message.contains("down")),
        "{}",
        human(&report)
    );
    let (code, out) = verify_cli(&verify_prometheus).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL health"), "{out}");
    let (code, out) = verify_cli(&verify_endpoint).await;
    assert_eq!(code, 1, "{out}");

    // 4. The app starts again: everything recovers, and the sidecar was never restarted.
    pod.app.start().await.expect("start the app again");
    let report = until(&prom_url, &options, false, Duration::from_secs(30)).await;
    assert!(!report.failed(), "{}", human(&report));
    let (code, out) = verify_cli(&verify_prometheus).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify_cli(&verify_endpoint).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        docker::inspect(pod.sidecar.id(), "{{.State.StartedAt}} {{.RestartCount}}"),
        format!("{started_at} 0")
    );
    assert!(pod.gate.is_some() && pod.pause.is_running().await.unwrap());
}

#[tokio::test]
async fn repeated_twenty_megabyte_scrapes_fit_the_generated_limits() {
    let Some(images) = docker::images_or_skip(env!("CARGO_BIN_EXE_demo-app")) else { return };
    let example = Example::render();
    let scratch = Scratch::new("limits");
    let pod = start_pod(images, &example, &scratch, &network_name("limits"), false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = pod.sidecar.id().to_string();
    // The limits really are on the container, so nothing below passes by running unconfined.
    assert_eq!(
        docker::inspect(
            &id,
            "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.ReadonlyRootfs}} \
                {{.Config.User}}"
        ),
        "15728640 100000000 true 65532:65532"
    );

    // Rounds of four concurrent 20 MB scrapes, each body checked to the byte.
    let url = format!("http://{}:9090/prometheus?bytes=20000000", pod.ip);
    let started = Instant::now();
    for round in 0..3 {
        let scrapes = (0..4).map(|_| {
            let url = url.clone();
            tokio::spawn(
                async move { fetch::get(&url, &[], Duration::from_secs(60), 32 << 20).await },
            )
        });
        for scrape in scrapes.collect::<Vec<_>>() {
            let fetched = scrape.await.unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(fetched.status, 200, "round {round}");
            // 20 MB of 64-byte padding lines after the seed's summary, the last one whole.
            assert!(
                fetched.body.len() >= 20_000_000,
                "round {round}: a short body of {} bytes",
                fetched.body.len()
            );
            let last = fetched.body.rsplit(|&b| b == b'\n').nth(1).unwrap_or_default();
            assert!(
                last.starts_with(b"demo_padding{") && last.len() == 63,
                "round {round}: the body was cut"
            );
        }
    }
    let elapsed = started.elapsed();

    // Not OOM-killed, not restarted, still serving.
    assert_eq!(
        docker::inspect(&id, "{{.State.Running}} {{.State.OOMKilled}} {{.RestartCount}}"),
        "true false 0"
    );
    wait_ready(&format!("http://{}:9090/-/ready", pod.ip), Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let peak = docker::peak_memory(&id).map_or("not exposed by this host's cgroups".into(), |b| {
        format!("{:.1} MiB", b as f64 / 1048576.0)
    });
    eprintln!("12 scrapes of 20 MB in {elapsed:.1?} under 15Mi / 100m; sidecar peak memory {peak}");
    assert!(
        pod.gate.is_none()
            && pod.app.is_running().await.unwrap()
            && pod.pause.is_running().await.unwrap()
    );
}

/// A client that asks for a 20 MB exposition and reads it at `rate` bytes a second through a
/// 64 KiB receive window, for `secs` seconds, then hangs up: the slow scrape a burst is made of.
async fn slow_scrape(addr: std::net::SocketAddr, rate: f64, secs: f64) -> usize {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let mut s = socket.connect(addr).await.expect("connect to the sidecar");
    s.write_all(b"GET /prometheus?bytes=20000000 HTTP/1.1\r\nHost: pod\r\n\r\n").await.unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = 0;
    while started.elapsed().as_secs_f64() < secs {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got += n,
            _ => break,
        }
        let ahead = got as f64 / rate - started.elapsed().as_secs_f64();
        if ahead > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(ahead)).await;
        }
    }
    got
}

/// The limits the generated ConfigMap gives the sidecar fit the memory limit the generated
/// Deployment gives it: `maxInFlight` slow 20 MB scrapes and `maxConnections` idle connections
/// at once, and the container is not OOM-killed, its peak stays under the limit, and a scrape
/// afterwards is served whole.
#[tokio::test]
async fn a_burst_of_slow_scrapes_and_idle_connections_at_the_generated_limits_is_survived() {
    let Some(images) = docker::images_or_skip(env!("CARGO_BIN_EXE_demo-app")) else { return };
    let example = Example::render();
    let proxy = meshscrape_common::ProxyConfig::from_yaml(
        Path::new("sidecar.yaml"),
        &example.sidecar_yaml,
        &Default::default(),
    )
    .expect("the generated sidecar.yaml reads");
    let (in_flight, conns) = (proxy.limits.max_in_flight, proxy.limits.max_connections);
    let scratch = Scratch::new("burst");
    let pod = start_pod(images, &example, &scratch, &network_name("burst"), false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = pod.sidecar.id().to_string();
    let limit: u64 = docker::inspect(&id, "{{.HostConfig.Memory}}").parse().unwrap();
    assert_eq!(limit, 15 << 20, "the generated 15Mi limit is on the container");
    let addr = std::net::SocketAddr::new(pod.ip, 9090);

    // maxConnections keep-alive connections, each after one answered request, left idle.
    let mut idle = Vec::new();
    for _ in 0..conns {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: pod\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        idle.push(s);
    }
    // Then maxInFlight scrapes of 20 MB at once, each read at 2 MB/s for 6 s.
    let burst: Vec<_> = (0..in_flight).map(|_| tokio::spawn(slow_scrape(addr, 2e6, 6.0))).collect();
    let mut read = 0;
    for scrape in burst {
        let got = scrape.await.unwrap();
        assert!(got > 1_000_000, "a slow scrape was refused or cut early: {got} bytes");
        read += got;
    }
    drop(idle);

    assert_eq!(
        docker::inspect(&id, "{{.State.Running}} {{.State.OOMKilled}} {{.RestartCount}}"),
        "true false 0",
        "the sidecar was OOM-killed or restarted"
    );
    let fetched = fetch::get(
        &format!("http://{addr}/prometheus?bytes=20000000"),
        &[],
        Duration::from_secs(60),
        32 << 20,
    )
    .await
    .expect("a scrape after the burst");
    assert_eq!(fetched.status, 200);
    assert!(fetched.body.len() >= 20_000_000, "a short body after the burst");

    // The process's own peak resident memory, read from the host, and the cgroup's peak
    // (which also counts the page cache it was charged for).
    let pid = docker::inspect(&id, "{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    let cgroup_peak = docker::peak_memory(&id);
    eprintln!(
        "{in_flight} slow 20 MB scrapes ({:.0} MB read) + {conns} idle connections under 15Mi: \
            sidecar peak RSS {:.1} MiB, cgroup peak {}",
        read as f64 / 1e6,
        hwm_kib as f64 / 1024.0,
        cgroup_peak.map_or("not exposed".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
    );
    let estimate = meshscrape_common::proxy::sizing::needed(&proxy.limits);
    assert!(
        hwm_kib * 1024 < estimate,
        "peak RSS {hwm_kib} KiB is above the sizing estimate of {estimate} bytes"
    );
    if let Some(peak) = cgroup_peak {
        assert!(peak < limit, "the cgroup reached its limit ({peak} bytes): memory pressure");
    }
}

/// The forwarder run as the kubelet runs a native sidecar: started before the app (once its
/// startup probe, its own /-/ready, passes) and stopped after it. In between it answers for
/// itself while the app is absent (502 on the metrics route), serves the app once it is up, and
/// drains cleanly (exit 0) after the app has gone.
#[tokio::test]
async fn a_native_sidecar_starts_before_the_app_and_stops_after_it() {
    let Some(images) = docker::images_or_skip(env!("CARGO_BIN_EXE_demo-app")) else { return };
    let example = Example::render_native();
    let c = example.sidecar_container();
    assert_eq!(c.restart_policy.as_deref(), Some("Always"), "rendered as a native sidecar");
    let probe = c.startup_probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("a startupProbe");
    assert_eq!(probe.path.as_deref(), Some("/-/ready"));

    let scratch = Scratch::new("native");
    let network = network_name("native");
    let pause = image(&images.base)
        .with_cmd(["sleep", "infinity"])
        .with_network(&network)
        .start()
        .await
        .expect("start the pod's pause container");
    let ip = pause.get_bridge_ip_address().await.expect("the pod's IP");
    let netns = format!("container:{}", pause.id());
    let base = format!("http://{ip}:9090");
    let metrics = format!("{base}/prometheus");

    // 1. The sidecar first; the app starts only once the startup probe passes.
    let sidecar =
        start_sidecar(images, &example, &scratch, &netns).await.unwrap_or_else(|e| panic!("{e}"));
    wait_ready(&format!("{base}/-/ready"), Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let before = fetch::get(&metrics, &[], Duration::from_secs(5), 1 << 20).await.unwrap();
    assert_eq!(before.status, 502, "no app yet: {}", String::from_utf8_lossy(&before.body));

    // 2. The app: scraped through the sidecar.
    let app = image(&images.app).with_network(&netns).start().await.expect("start the app");
    let mut served = None;
    for _ in 0..100 {
        let f = fetch::get(&metrics, &[], Duration::from_secs(5), 16 << 20).await.unwrap();
        if f.status == 200 {
            served = Some(f);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let served = served.expect("the app was never served through the sidecar");
    assert!(String::from_utf8_lossy(&served.body).contains(METRIC));

    // 3. The app stops first; the sidecar is still there, answering for itself.
    app.stop().await.expect("stop the app");
    let ready = fetch::get(&format!("{base}/-/ready"), &[], Duration::from_secs(5), 1 << 20).await;
    assert_eq!(ready.unwrap().status, 200, "the sidecar outlives the app");
    let after = fetch::get(&metrics, &[], Duration::from_secs(5), 1 << 20).await.unwrap();
    assert_eq!(after.status, 502);

    // 4. Then the sidecar: SIGTERM, a clean drain.
    sidecar.stop().await.expect("stop the sidecar");
    assert_eq!(docker::inspect(sidecar.id(), "{{.State.ExitCode}}"), "0");
    drop(pause);
}

/// The kubelet brings a ConfigMap update to the pod by swapping `..data`: the sidecar in its
/// container serves the new route without a restart, and refuses a broken update while the
/// routes in force keep serving.
#[tokio::test]
async fn a_configmap_update_is_served_without_a_restart() {
    let Some(images) = docker::images_or_skip(env!("CARGO_BIN_EXE_demo-app")) else { return };
    let example = Example::render();
    let scratch = Scratch::new("reload");
    let pod = start_pod(images, &example, &scratch, &network_name("reload"), false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = pod.sidecar.id().to_string();
    let base = format!("http://{}:9090", pod.ip);
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move {
            fetch::get(&url, &[], Duration::from_secs(5), 1 << 20).await.map(|f| f.status.as_u16())
        }
    };
    assert_eq!(get("/extra").await.ok(), Some(404));

    let mut config = meshscrape_common::ProxyConfig::from_yaml(
        Path::new("sidecar.yaml"),
        &example.sidecar_yaml,
        &Default::default(),
    )
    .unwrap();
    let target = config.routes[0].targets[0].clone();
    config.routes.push(meshscrape_common::Route { public: "/extra".into(), targets: vec![target] });
    configmap_update(&scratch, &config.to_yaml()).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    while get("/extra").await.ok() != Some(200) {
        assert!(started.elapsed() < Duration::from_secs(30), "the new route was never served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("the new route answered {:.1?} after the swap", started.elapsed());

    // Broken: refused, and the routes in force keep serving.
    configmap_update(&scratch, &format!("{}\nlimits: {{maxInFlight: 0}}\n", "routes: [/x=/x]"))
        .unwrap_or_else(|e| panic!("{e}"));
    let metrics = format!("{base}/-/metrics");
    let started = Instant::now();
    loop {
        let body = fetch::get(&metrics, &[], Duration::from_secs(5), 1 << 20).await.unwrap().body;
        if String::from_utf8_lossy(&body)
            .contains("meshscrape_proxy_config_reloads_total{result=\"failure\"} 1")
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the broken update was never refused");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(get("/extra").await.ok(), Some(200));
    assert_eq!(get("/x").await.ok(), Some(404));
    assert_eq!(docker::inspect(&id, "{{.State.Running}} {{.RestartCount}}"), "true 0");
    assert!(
        pod.gate.is_none()
            && pod.app.is_running().await.unwrap()
            && pod.pause.is_running().await.unwrap()
    );
}
