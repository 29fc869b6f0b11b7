//! The binary: exit codes 0/1/2, the output formats, and `--help`.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_meshscrape-verify");

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn manifests_exit_0_when_every_link_holds_and_1_when_one_breaks() {
    let out = Command::new(BIN).args(["manifests", &fixture("identity-service.yaml"), &fixture("prometheus.yaml")]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.lines().last().unwrap().ends_with("0 failed, 0 warnings"), "{text}");

    let broken = std::env::temp_dir().join(format!("meshscrape-verify-broken-{}.yaml", std::process::id()));
    let yaml = std::fs::read_to_string(fixture("identity-service.yaml")).unwrap().replace("- port: \"prometheus\"", "- port: \"metrics\"");
    std::fs::write(&broken, yaml).unwrap();
    let out = Command::new(BIN).args(["manifests", "--output", "junit", broken.to_str().unwrap(), &fixture("prometheus.yaml")]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("<failure message=\"no port named metrics"));
    std::fs::remove_file(broken).unwrap();
}

#[test]
fn unreadable_input_exits_2() {
    let out = Command::new(BIN).args(["manifests", "/no/such/file.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/file.yaml"));
    let out = Command::new(BIN).args(["manifests", "--prometheus-selector", "nolabel", &fixture("prometheus.yaml")]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_snapshot() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    insta::assert_snapshot!("help", String::from_utf8(out.stdout).unwrap());
}
