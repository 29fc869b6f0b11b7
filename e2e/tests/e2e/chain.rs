//! The generator's output walked by the verifier's real chain check, for two namespaces: the
//! monitor selected by the kube-prometheus Prometheus object, then in each namespace the Service,
//! its named port, the sidecar's container port, its route, the Istio exclusion and the
//! NetworkPolicy. One implementation of the chain, asked of the other tool's output.

use std::path::Path;

use meshscrape_common::AppConfig;
use meshscrape_gen::templates::Templates;
use meshscrape_verify::manifests::{self, Options};
use meshscrape_verify::report::Status;

/// The checks that did not pass (notes, `info`, allowed when `notes_allowed`), one line each.
fn not_passed(report: &meshscrape_verify::report::Report, notes_allowed: bool) -> Vec<String> {
    report
        .checks
        .iter()
        .filter(|c| c.status != Status::Pass && !(notes_allowed && c.status == Status::Info))
        .map(|c| format!("{} {:?}: {}", c.name, c.object, c.message))
        .collect()
}

const PROMETHEUS: &str = include_str!("../../../verify/tests/fixtures/prometheus.yaml");

#[test]
fn the_verifier_finds_every_link_of_the_generated_chain_in_two_namespaces() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/identity-service.yaml");
    let config = AppConfig::load(&example)
        .and_then(|c| c.with_namespaces(vec!["tools".into(), "staging".into()]))
        .unwrap_or_else(|e| panic!("{e}"));
    let rendered = meshscrape_gen::render(&config, &Templates::load(None).unwrap()).unwrap();
    let stream = format!("{}---\n{PROMETHEUS}", meshscrape_gen::output::stream(&rendered));
    let objects = manifests::load(&["-".into()], || Ok(stream)).unwrap();
    let report = manifests::check(&objects, &Options::default());

    let not_passed = not_passed(&report, false);
    assert_eq!(not_passed, Vec::<String>::new());
    let passed = |name: &str, object: &str, says: &str| {
        report.checks.iter().any(|c| {
            c.name == name && c.object.as_deref() == Some(object) && c.message.contains(says)
        })
    };
    let monitor = "ServiceMonitor/monitoring/argo-monitor";
    assert!(passed("schema", monitor, "valid against the ServiceMonitor CRD"));
    assert!(passed("Prometheus selection", monitor, "Prometheus/monitoring/kube-prometheus"));
    for ns in ["tools", "staging"] {
        let workload = format!("Deployment/{ns}/identity-service");
        let service = format!("Service/{ns}/identity-service");
        let links = [
            ("Service selection", monitor, service.clone()),
            ("Service port", service.as_str(), "has port prometheus".into()),
            ("container port", &workload, "meshscrape-proxy declares port 9090".into()),
            (
                "sidecar route",
                &format!("ConfigMap/{ns}/identity-service-meshscrape"),
                "/prometheus".into(),
            ),
            ("Istio", &workload, "excluded from inbound capture".into()),
            ("NetworkPolicy", &workload, "admits port 9090 from namespace monitoring".into()),
        ];
        for (name, object, says) in links {
            assert!(passed(name, object, &says), "{ns}: no passing {name} on {object}: {report:?}");
        }
    }
}

/// A merged route written as a list in the app config: gen renders it into the ConfigMap, and the
/// verifier follows each of its targets to a container port, warning about the one no container
/// declares.
#[test]
fn a_merged_route_is_rendered_as_a_list_and_each_target_is_followed() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/identity-service.yaml");
    let text = std::fs::read_to_string(&example).unwrap().replace(
        "    - /prometheus=/prometheus\n",
        "    - path: /prometheus\n      targets: [/prometheus, 'http://127.0.0.1:9100/metrics']\n",
    );
    let config = AppConfig::from_yaml(&example, &text).unwrap_or_else(|e| panic!("{e}"));
    let rendered = meshscrape_gen::render(&config, &Templates::load(None).unwrap()).unwrap();
    let stream = meshscrape_gen::output::stream(&rendered);
    assert!(
        stream.contains("- path: /prometheus\n      targets:\n      - /prometheus\n      - http://127.0.0.1:9100/metrics"),
        "{stream}"
    );
    let objects =
        manifests::load(&["-".into()], || Ok(format!("{stream}---\n{PROMETHEUS}"))).unwrap();
    let report = manifests::check(&objects, &Options::default());
    let route: Vec<(Status, &str)> = report
        .checks
        .iter()
        .filter(|c| c.name == "route target")
        .map(|c| (c.status, c.message.as_str()))
        .collect();
    assert_eq!(
        route,
        [
            (
                Status::Warn,
                "no container of the pod declares port 9100, where route /prometheus sends \
                 /metrics; if nothing listens there, that target is left out of every scrape"
            ),
            (
                Status::Pass,
                "/prometheus goes to port 8080 path /prometheus (container identity-app)"
            ),
        ]
    );
}

/// The example with the sidecar's access rules on: the verifier finds the monitor's TLS settings
/// and token agreeing with the sidecar's (and valid against the operator's CRD), and names the
/// link that breaks when the monitor loses one.
#[test]
fn the_access_example_agrees_with_its_monitor_and_a_missing_credential_is_named() {
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/identity-service-tls.yaml");
    let config = AppConfig::load(&example).unwrap_or_else(|e| panic!("{e}"));
    let rendered = meshscrape_gen::render(&config, &Templates::load(None).unwrap()).unwrap();
    let stream = format!("{}---\n{PROMETHEUS}", meshscrape_gen::output::stream(&rendered));
    let check = |stream: String| {
        let objects = manifests::load(&["-".into()], || Ok(stream)).unwrap();
        manifests::check(&objects, &Options::default())
    };
    let report = check(stream.clone());
    let not_passed = not_passed(&report, true);
    assert_eq!(not_passed, Vec::<String>::new());
    assert!(report.checks.iter().any(|c| c.name == "sidecar access"
        && c.status == Status::Pass
        && c.message
            == "the sidecar requires TLS, client certificates, a bearer token and the monitor provides it"));
    assert!(report.checks.iter().any(|c| c.name == "schema"
        && c.status == Status::Pass
        && c.message.contains("ServiceMonitor CRD")));

    // The monitor without its `authorization` block (and the lines under it).
    let mut skipping = false;
    let without_token: String = stream
        .lines()
        .filter(|line| {
            if line.trim_start() == "authorization:" {
                skipping = true;
                return false;
            }
            skipping &= line.starts_with("        ");
            !skipping
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let report = check(without_token);
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.message.as_str())
        .collect();
    assert_eq!(
        failed,
        ["the sidecar requires a bearer token but the monitor sends none: every scrape gets 401"]
    );
    // The same rules rendered into a PodMonitor: agreeing, and valid against its CRD.
    let text = std::fs::read_to_string(&example)
        .unwrap()
        .replace("  kind: ServiceMonitor\n", "  kind: PodMonitor\n");
    let text = if text.contains("kind: PodMonitor") {
        text
    } else {
        text.replace("monitor:\n", "monitor:\n  kind: PodMonitor\n")
    };
    let pod_config = AppConfig::from_yaml(&example, &text).unwrap_or_else(|e| panic!("{e}"));
    let rendered = meshscrape_gen::render(&pod_config, &Templates::load(None).unwrap()).unwrap();
    let pod_stream = format!("{}---\n{PROMETHEUS}", meshscrape_gen::output::stream(&rendered));
    assert!(pod_stream.contains("kind: PodMonitor") && pod_stream.contains("podMetricsEndpoints"));
    let report = check(pod_stream);
    assert!(
        report.checks.iter().any(|c| c.name == "sidecar access" && c.status == Status::Pass),
        "{report:?}"
    );
    assert!(!report.failed(), "{report:?}");

    let plain = stream.replace("      scheme: https\n", "      scheme: http\n");
    let report = check(plain);
    assert!(report.checks.iter().any(|c| c.status == Status::Fail
        && c.message.starts_with("the sidecar serves TLS but the monitor scrapes plain http")));
}

/// The admission webhook's patch, applied as the API server applies it, to the example's
/// workload as a user would write it (no sidecar, `meshscrape.io/inject: "true"`), as a
/// Deployment, a StatefulSet and a DaemonSet: with gen's ConfigMap, Service and monitor beside
/// it, the verifier finds every link of the chain.
#[test]
fn a_workload_patched_by_the_webhook_passes_the_verifier() {
    use meshscrape_gen::admission::{self, Decision, Scope};
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/identity-service.yaml");
    let config = AppConfig::load(&example).unwrap_or_else(|e| panic!("{e}"));
    let templates = Templates::load(None).unwrap();
    let rendered = meshscrape_gen::render(&config, &templates).unwrap();
    let stream = meshscrape_gen::output::stream(&rendered);
    let docs = meshscrape_gen::inject::read_inputs(&["-".into()], || Ok(stream.clone())).unwrap();
    let at = docs.iter().position(|d| d["kind"] == "Deployment").unwrap();
    for kind in ["Deployment", "StatefulSet", "DaemonSet"] {
        // The user's workload: the app alone, asking for injection.
        let mut plain = docs[at].clone();
        plain["kind"] = kind.into();
        let spec = plain["spec"].as_object_mut().unwrap();
        spec.remove("replicas");
        if kind == "StatefulSet" {
            spec.insert("serviceName".into(), "identity-service".into());
        }
        let template = &mut plain["spec"]["template"];
        template["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .retain(|c| c["name"] != "meshscrape-proxy");
        template["spec"].as_object_mut().unwrap().remove("volumes");
        template["metadata"]["annotations"] = serde_json::json!({"meshscrape.io/inject": "true"});
        plain["metadata"].as_object_mut().unwrap().remove("namespace");
        let review = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u-1", "operation": "CREATE", "namespace": "tools", "object": plain}});
        let scope = Scope { own_namespace: "meshscrape-system".into(), namespace_opted_in: false };
        let (answer, decision) =
            admission::review(&config, &templates, &serde_json::to_vec(&review).unwrap(), &scope)
                .unwrap();
        assert_eq!(decision, Decision::Injected);
        let bytes: k8s_openapi::ByteString =
            serde_json::from_value(answer["response"]["patch"].clone()).unwrap();
        let ops: Vec<serde_json::Value> = serde_json::from_slice(&bytes.0).unwrap();
        let mut patched = plain.clone();
        for op in &ops {
            assert_eq!(op["op"], "add", "{op}");
            let (parent, key) = op["path"].as_str().unwrap().rsplit_once('/').unwrap();
            patched.pointer_mut(parent).unwrap()[key] = op["value"].clone();
        }
        patched["metadata"]["namespace"] = "tools".into();
        let mut docs = docs.clone();
        docs[at] = patched;
        let mut text = String::new();
        for d in &docs {
            // JSON is YAML.
            text += &format!("---\n{d}\n");
        }
        text += &format!("---\n{PROMETHEUS}");
        let objects = manifests::load(&["-".into()], || Ok(text)).unwrap();
        let report = manifests::check(&objects, &Options::default());
        let not_passed = not_passed(&report, false);
        assert_eq!(not_passed, Vec::<String>::new(), "{kind}");
        assert!(
            report.checks.iter().any(|c| c.name == "sidecar route" && c.status == Status::Pass)
        );
        assert!(
            report
                .checks
                .iter()
                .any(|c| c.object.as_deref() == Some(&format!("{kind}/tools/identity-service"))),
            "{kind} was checked"
        );
    }
}
