//! The binary: stdout stream, --out folders, --help, and bad configs.

use std::process::{Command, Output};

use super::support::{example, root};

const BIN: &str = env!("CARGO_BIN_EXE_meshscrape-gen");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).current_dir(root()).output().unwrap()
}

/// The verifier's cluster tests read the access example's rendering from a fixture too.
#[test]
fn the_verifiers_access_fixture_is_the_access_example_rendered() {
    let out = run(&["--config", "examples/identity-service-tls.yaml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fixture =
        std::fs::read_to_string(root().join("verify/tests/fixtures/identity-service-tls.yaml"))
            .unwrap();
    assert!(
        fixture == String::from_utf8_lossy(&out.stdout),
        "verify/tests/fixtures/identity-service-tls.yaml differs from the access example's \
         rendering; refresh it: cargo run -p meshscrape-gen -- --config \
         examples/identity-service-tls.yaml > verify/tests/fixtures/identity-service-tls.yaml"
    );
}

#[test]
fn renders_the_example_snapshot() {
    let out = run(&["--config", "examples/identity-service.yaml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    insta::assert_snapshot!("identity_service", String::from_utf8(out.stdout).unwrap());
}

/// The verifier's tests read the example's rendering from a fixture of their own; it must be this
/// snapshot, byte for byte, so the two cannot drift apart.
#[test]
fn the_verifiers_fixture_is_the_example_snapshot() {
    let snap = std::fs::read_to_string(
        root()
            .join("gen/tests/generator/snapshots/generator__generator__cli__identity_service.snap"),
    )
    .unwrap();
    // insta's header is a front matter: `---`, its keys, `---`; the snapshot follows.
    let body = snap.splitn(3, "---\n").nth(2).expect("an insta snapshot");
    let fixture =
        std::fs::read_to_string(root().join("verify/tests/fixtures/identity-service.yaml"))
            .unwrap();
    assert!(
        fixture.trim_end() == body.trim_end(),
        "verify/tests/fixtures/identity-service.yaml differs from the example's snapshot; refresh \
         it: cargo run -p meshscrape-gen -- --config examples/identity-service.yaml > \
         verify/tests/fixtures/identity-service.yaml"
    );
}

#[test]
fn help_snapshot() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    insta::assert_snapshot!("help", String::from_utf8(out.stdout).unwrap());
    let out = run(&["inject", "--help"]);
    assert!(out.status.success());
    insta::assert_snapshot!("inject_help", String::from_utf8(out.stdout).unwrap());
}

#[test]
fn out_writes_one_folder_per_namespace_with_a_kustomization() {
    let dir = std::env::temp_dir().join(format!("meshscrape-gen-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = run(&[
        "--config",
        "examples/identity-service.yaml",
        "--namespace",
        "tools",
        "--namespace",
        "staging",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    let mut folders: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    folders.sort();
    assert_eq!(folders, ["monitoring", "staging", "tools"]);
    let k = std::fs::read_to_string(dir.join("staging/kustomization.yaml")).unwrap();
    for file in [
        "configmap-identity-service-meshscrape.yaml",
        "deployment-identity-service.yaml",
        "service-identity-service.yaml",
        "networkpolicy-identity-service-metrics.yaml",
    ] {
        assert!(k.contains(&format!("  - {file}\n")), "{k}");
        let text = std::fs::read_to_string(dir.join("staging").join(file)).unwrap();
        assert!(text.contains("namespace: \"staging\""), "{file}");
    }
    assert!(dir.join("monitoring/servicemonitor-argo-monitor.yaml").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_out_write_leaves_nothing_behind() {
    let dir = std::env::temp_dir().join(format!("meshscrape-gen-fail-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // A folder where the last file's temporary copy must go: every other file is written first.
    let blocker = dir.join("monitoring/kustomization.yaml.tmp");
    std::fs::create_dir_all(&blocker).unwrap();
    let out = run(&["--config", "examples/identity-service.yaml", "--out", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kustomization.yaml.tmp"), "the error names the path: {stderr}");
    let mut left = Vec::new();
    for ns in ["tools", "monitoring"] {
        for entry in std::fs::read_dir(dir.join(ns)).unwrap() {
            left.push(entry.unwrap().path());
        }
    }
    assert_eq!(left, [blocker], "no object file and no temporary file may be left");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes `text` to a temp file and runs the generator on it.
fn with_config(text: &str) -> (Output, String) {
    let path = std::env::temp_dir().join(format!(
        "meshscrape-gen-bad-{}-{}.yaml",
        std::process::id(),
        text.len()
    ));
    std::fs::write(&path, text).unwrap();
    let out = run(&["--config", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    (out, path.display().to_string())
}

#[test]
fn bad_configs_fail_with_nothing_on_stdout_naming_file_field_and_line() {
    let good = std::fs::read_to_string(example()).unwrap();
    for (edit, field, line) in [
        (good.replace("namespaces: [tools]", "namespace: [tools]"), "namespace", 9),
        (good.replace("  port: 8080", "  port: \"eighty\""), "port", 15),
        (good.replace("  port: 8080", "  port: 80800"), "container.port", 15),
        (good.replace("name: identity-service", "name: Identity_Service"), "name", 8),
        (
            good.replace("interval: 30s", "interval: 30s\n  scrapeTimeout: 1m"),
            "monitor.scrapeTimeout",
            45,
        ),
        (good.replace("labels:\n  run: identity-app", "labels:\n  run: [identity-app"), "", 11),
    ] {
        let (out, path) = with_config(&edit);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            out.stdout.is_empty(),
            "stdout must stay empty: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(err.contains(&format!("{path}:{line}:")), "want line {line} in: {err}");
        assert!(err.contains(field), "want {field} in: {err}");
    }
}

#[test]
fn missing_config_file_exits_2() {
    let out = run(&["--config", "no/such/file.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read no/such/file.yaml"));
    assert!(out.stdout.is_empty());
}

/// A template that fails only in the last namespace: by then every earlier namespace has been
/// rendered and checked, and still nothing may come out.
#[test]
fn a_failure_in_the_last_namespace_leaves_no_output_on_stdout_or_in_out() {
    let base = std::env::temp_dir().join(format!("meshscrape-gen-late-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let templates = base.join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    let service = std::fs::read_to_string(root().join("templates/service.yaml.j2")).unwrap();
    std::fs::write(
        templates.join("service.yaml.j2"),
        format!("{{% if namespace == \"late\" %}}{{{{ no_such_value.x }}}}{{% endif %}}{service}"),
    )
    .unwrap();
    let mut args = vec!["--config", "examples/identity-service.yaml", "--templates"];
    args.push(templates.to_str().unwrap());
    let namespaces: Vec<String> = (0..50).map(|i| format!("ns-{i}")).collect();
    for ns in &namespaces {
        args.extend(["--namespace", ns]);
    }
    args.extend(["--namespace", "late"]);

    let out = run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "{} bytes reached stdout", out.stdout.len());
    assert!(String::from_utf8_lossy(&out.stderr).contains("service.yaml.j2"));

    let dir = base.join("out");
    let out = run(&[&args[..], &["--out", dir.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let mut left = Vec::new();
    for folder in std::fs::read_dir(&dir).into_iter().flatten() {
        for file in std::fs::read_dir(folder.unwrap().path()).unwrap() {
            left.push(file.unwrap().path());
        }
    }
    assert!(left.is_empty(), "files left behind: {left:?}");
    std::fs::remove_dir_all(&base).unwrap();
}

/// `meshscrape-gen webhook`: the six objects, each valid as its kind; both webhooks fail open and
/// never see kube-system or the webhook's namespace; the caBundle is the CA in the Secret; the
/// webhook reads the very config file given.
#[test]
fn the_webhook_is_rendered_whole_and_fails_open() {
    let out = run(&[
        "webhook",
        "--config",
        "examples/identity-service.yaml",
        "--namespace",
        "mesh-ops",
        "--app-namespace",
        "shop",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("valid until"));
    let text = String::from_utf8(out.stdout).unwrap();
    let docs = meshscrape_gen::inject::read_inputs(&["-".into()], || Ok(text.clone())).unwrap();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ConfigMap",
            "Secret",
            "Deployment",
            "Service",
            "MutatingWebhookConfiguration",
            "ConfigMap"
        ]
    );
    // The sidecar's ConfigMap for the app namespace, which injected pods mount.
    assert_eq!(docs[6]["metadata"]["namespace"], "shop");
    assert_eq!(docs[6]["metadata"]["name"], "identity-service-meshscrape");
    let hook = &docs[5];
    let secret = &docs[2];
    for w in hook["webhooks"].as_array().unwrap() {
        assert_eq!(w["failurePolicy"], "Ignore");
        assert_eq!(w["sideEffects"], "None");
        let excluded = &w["namespaceSelector"]["matchExpressions"][1];
        assert_eq!(excluded["operator"], "NotIn");
        assert_eq!(excluded["values"], serde_json::json!(["kube-system", "mesh-ops"]));
        assert_eq!(w["clientConfig"]["service"]["namespace"], "mesh-ops");
        let bundle: k8s_openapi::ByteString =
            serde_json::from_value(w["clientConfig"]["caBundle"].clone()).unwrap();
        assert_eq!(String::from_utf8(bundle.0).unwrap(), secret["stringData"]["ca.crt"]);
    }
    let paths: Vec<&str> = hook["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["clientConfig"]["service"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/inject-namespace", "/inject"]);
    assert_eq!(
        docs[1]["data"]["app.yaml"].as_str().unwrap(),
        std::fs::read_to_string(root().join("examples/identity-service.yaml")).unwrap()
    );
    assert_eq!(docs[0]["automountServiceAccountToken"], false, "it calls no API");
    assert!(
        secret["stringData"]["ca.key"].as_str().unwrap().contains("PRIVATE KEY"),
        "the CA's key, for the webhook's own renewals"
    );
    // Two renderings make two certificates: rendering again rotates it.
    let again = run(&["webhook", "--config", "examples/identity-service.yaml"]);
    assert_ne!(String::from_utf8(again.stdout).unwrap(), text);

    let closed =
        run(&["webhook", "--config", "examples/identity-service.yaml", "--failure-policy", "Fail"]);
    assert!(String::from_utf8_lossy(&closed.stdout).contains("failurePolicy: \"Fail\""));

    let bad =
        run(&["webhook", "--config", "examples/identity-service.yaml", "--namespace", "Mesh_Ops"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--namespace"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// With cert-manager: a Certificate (and a self-signed Issuer unless one is named) instead of a
/// Secret made here, and the caBundle left to cert-manager's cainjector.
#[test]
fn with_cert_manager_the_certificate_is_cert_managers() {
    let kinds = |args: &[&str]| -> (Vec<String>, Vec<serde_json::Value>) {
        let mut all = vec!["webhook", "--config", "examples/identity-service.yaml"];
        all.extend(args);
        let out = run(&all);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let docs = meshscrape_gen::inject::read_inputs(&["-".into()], || Ok(text)).unwrap();
        (docs.iter().map(|d| d["kind"].as_str().unwrap().to_string()).collect(), docs)
    };
    let (k, docs) = kinds(&["--cert-manager"]);
    assert_eq!(
        k,
        [
            "ServiceAccount",
            "ConfigMap",
            "Issuer",
            "Certificate",
            "Deployment",
            "Service",
            "MutatingWebhookConfiguration",
            "ConfigMap"
        ]
    );
    let hook = &docs[6];
    assert_eq!(
        hook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "meshscrape-system/meshscrape-webhook"
    );
    assert!(hook["webhooks"][0]["clientConfig"].get("caBundle").is_none());
    assert_eq!(
        docs[3]["spec"]["secretName"], "meshscrape-webhook-tls",
        "the Secret the webhook mounts"
    );
    assert_eq!(docs[3]["spec"]["issuerRef"]["name"], "meshscrape-webhook-selfsigned");

    let (k, docs) = kinds(&["--cert-manager", "--issuer", "ClusterIssuer/internal-ca"]);
    assert!(!k.contains(&"Issuer".to_string()));
    let cert = docs.iter().find(|d| d["kind"] == "Certificate").unwrap();
    assert_eq!(cert["spec"]["issuerRef"]["kind"], "ClusterIssuer");
    assert_eq!(cert["spec"]["issuerRef"]["name"], "internal-ca");

    let bad = run(&[
        "webhook",
        "--config",
        "examples/identity-service.yaml",
        "--cert-manager",
        "--issuer",
        "letsencrypt",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("ClusterIssuer/NAME"));
}
