//! The binary: exit codes 0/1/2, the output formats, and `--help`.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_meshscrape-verify");

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn manifests_exit_0_when_every_link_holds_and_1_when_one_breaks() {
    let out = Command::new(BIN)
        .args(["manifests", &fixture("identity-service.yaml"), &fixture("prometheus.yaml")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.lines().last().unwrap().ends_with("0 failed, 0 warnings"), "{text}");

    let broken =
        std::env::temp_dir().join(format!("meshscrape-verify-broken-{}.yaml", std::process::id()));
    let yaml = std::fs::read_to_string(fixture("identity-service.yaml"))
        .unwrap()
        .replace("- port: \"prometheus\"", "- port: \"metrics\"");
    std::fs::write(&broken, yaml).unwrap();
    let out = Command::new(BIN)
        .args([
            "manifests",
            "--output",
            "junit",
            broken.to_str().unwrap(),
            &fixture("prometheus.yaml"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("<failure message=\"no port named metrics")
    );
    std::fs::remove_file(broken).unwrap();
}

#[test]
fn unreadable_input_exits_2() {
    let out = Command::new(BIN).args(["manifests", "/no/such/file.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/file.yaml"));
    let out = Command::new(BIN)
        .args(["manifests", "--prometheus-selector", "nolabel", &fixture("prometheus.yaml")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_snapshot() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    insta::assert_snapshot!("help", String::from_utf8(out.stdout).unwrap());
}

/// A kubeconfig whose API server is `server`.
fn kubeconfig(server: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "meshscrape-verify-kubeconfig-{}-{}",
        std::process::id(),
        server.len()
    ));
    let yaml = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: test\n  \
            cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: test\n  context: {{cluster: test, user: test}}\nusers:\n- name: test\n  user: {{token: not-a-real-token}}\n"
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn cluster_exits_2_with_one_line_when_the_api_server_refuses_or_hangs() {
    // Refused: nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = kubeconfig(&format!("https://{closed}"));
    let out = Command::new(BIN)
        .args(["cluster", "-n", "tools", "--service", "identity-service"])
        .env("KUBECONFIG", &config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.lines()
            .last()
            .unwrap()
            .starts_with("meshscrape-verify: reading Service/tools/identity-service: "),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    // Hangs: accepts the connection and never says a word; --request-timeout bounds it.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config =
        kubeconfig(&format!("https://{}:{}", "127.0.0.1", hung.local_addr().unwrap().port()));
    let started = std::time::Instant::now();
    let out = Command::new(BIN)
        .args([
            "cluster",
            "-n",
            "tools",
            "--service",
            "identity-service",
            "--request-timeout",
            "1s",
        ])
        .env("KUBECONFIG", &config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
    drop(hung);

    // A context that is not in the kubeconfig.
    let out = Command::new(BIN)
        .args(["cluster", "-n", "tools", "--service", "x", "--context", "prod"])
        .env("KUBECONFIG", &config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kubeconfig context prod"));
}

#[test]
fn a_prometheus_that_cannot_be_reached_is_exit_2_not_a_failed_check() {
    // Port 1 on loopback: nothing listens there (binding a free port and releasing it would race).
    let out = Command::new(BIN)
        .args(["prometheus", "--url", "http://127.0.0.1:1", "--job", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot ask Prometheus: cannot connect"), "{err}");
    assert!(out.stdout.is_empty());
}
