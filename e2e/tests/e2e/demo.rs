//! `scripts/demo` end to end, without a person: the demo binary started as the script starts it,
//! its Prometheus UI answering on the published port while it runs, Ctrl-C (SIGINT) removing
//! every container and network it started; and its clear refusals (a port in use, no engine).

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use meshscrape_e2e::docker;

const DEMO: &str = env!("CARGO_BIN_EXE_meshscrape-demo");

/// Containers and networks the demo with this process id left behind.
fn leftovers(pid: u32) -> String {
    let network = format!("meshscrape-demo-{pid}");
    let containers = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("network={network}")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let networks = Command::new("docker")
        .args(["network", "ls", "-q", "--filter", &format!("name={network}")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{containers}{networks}")
}

#[tokio::test]
async fn the_demo_runs_prometheus_through_the_sidecar_and_ctrl_c_removes_it_all() {
    // The images are built here first (the test's own output shows the progress).
    if docker::images_or_skip(env!("CARGO_BIN_EXE_demo-app")).is_none() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(DEMO)
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Its lines as they come, on threads, so a demo that stops talking fails the test in time.
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    // stdout and stderr are read apart, so their lines interleave as they come: wait for every
    // line the test looks for, not for the last one printed.
    let wanted = [
        "[1/5]",
        "[2/5]",
        "[3/5]",
        "[4/5]",
        "[5/5]",
        "5 passed, 0 failed",
        "4 passed, 0 failed",
        "Press Ctrl-C",
    ];
    let mut seen: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while !wanted.iter().all(|w| seen.iter().any(|l| l.contains(w))) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("the demo never got ready:\n{}", seen.join("\n"));
            }
        }
    }
    let said = seen.join("\n");
    assert!(said.contains(&format!("http://127.0.0.1:{port}/targets")), "{said}");

    // Prometheus's UI and API on the published port, with the target up.
    let targets = meshscrape_verify::fetch::get(
        &format!("http://127.0.0.1:{port}/api/v1/targets"),
        &[],
        Duration::from_secs(5),
        1 << 20,
    )
    .await
    .expect("Prometheus answers on the published port");
    let body = String::from_utf8_lossy(&targets.body);
    assert!(body.contains("\"health\":\"up\""), "{body}");

    // Ctrl-C: exit 0, nothing left behind.
    let status = Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let exited = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert_eq!(exited.code(), Some(0));
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(rest.iter().any(|l| l.contains("Removed everything")), "{rest:?}");
    assert_eq!(leftovers(pid), "", "containers or the network outlived the demo");
}

#[test]
fn the_demo_refuses_a_port_in_use_and_a_missing_engine_with_the_reason() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(DEMO).args(["--port", &port.to_string(), "--once"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("something else listens there. Pick another port with --port"), "{err}");

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = Command::new(DEMO)
        .args(["--port", &port.to_string(), "--once"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no Docker engine answers"), "{err}");
    assert!(err.contains("scripts/setup-debian --with-docker"), "{err}");
}
