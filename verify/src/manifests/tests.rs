use super::*;
use crate::report::Status;

const GENERATED: &str = include_str!("../../tests/fixtures/identity-service.yaml");
const PROMETHEUS: &str = include_str!("../../tests/fixtures/prometheus.yaml");

fn run(text: &str, options: &Options) -> Report {
    let objects = load(&["-".to_string()], || Ok(text.to_string())).unwrap();
    check(&objects, options)
}

fn failures(report: &Report) -> Vec<(String, String)> {
    report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| (c.name.clone(), c.message.clone()))
        .collect()
}

fn with_prometheus(generated: &str) -> String {
    format!("{generated}---\n{PROMETHEUS}")
}

#[test]
fn generated_manifests_pass_every_link() {
    let report = run(&with_prometheus(GENERATED), &Options::default());
    assert_eq!(failures(&report), Vec::<(String, String)>::new());
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    for link in [
        "schema",
        "Prometheus selection",
        "Service selection",
        "Service port",
        "container port",
        "sidecar route",
        "Istio",
        "NetworkPolicy",
    ] {
        assert!(names.contains(&link), "no {link} check in {names:?}");
    }
}

#[test]
fn missing_prometheus_is_a_warning_and_the_selector_flag_decides() {
    let report = run(GENERATED, &Options::default());
    assert!(!report.failed());
    assert!(
        report.checks.iter().any(|c| c.status == Status::Warn && c.name == "Prometheus selection")
    );
    let report = run(
        GENERATED,
        &Options {
            prometheus_selector: vec![("release".into(), "kube-prometheus-stack".into())],
            ..Default::default()
        },
    );
    let f = failures(&report);
    assert!(
        f.iter().any(
            |(n, m)| n == "Prometheus selection" && m.contains("release=kube-prometheus-stack")
        ),
        "{f:?}"
    );
}

#[test]
fn monitor_not_selected_by_prometheus() {
    let text = with_prometheus(
        &GENERATED.replace("\"prometheus\": \"kube-prometheus\"", "\"prometheus\": \"other\""),
    );
    let f = failures(&run(&text, &Options::default()));
    assert!(
        f.iter().any(|(n, m)| n == "Prometheus selection" && m.contains("do not match")),
        "{f:?}"
    );
}

#[test]
fn prometheus_without_namespace_selector_only_sees_its_own_namespace() {
    let prom = PROMETHEUS
        .replace("  serviceMonitorNamespaceSelector: {}\n", "")
        .replace("namespace: monitoring", "namespace: prom");
    let f = failures(&run(&format!("{GENERATED}---\n{prom}"), &Options::default()));
    assert!(
        f.iter().any(|(n, m)| n == "Prometheus selection"
            && m.contains("does not admit namespace monitoring")),
        "{f:?}"
    );
}

#[test]
fn service_labels_the_monitor_does_not_select() {
    let text = with_prometheus(&GENERATED.replace(
        "    \"app\": \"argo-monitoring-service\"\n    \"app.kubernetes.io/managed-by\"",
        "    \"app.kubernetes.io/managed-by\"",
    ));
    let report = run(&text, &Options::default());
    let c = report.checks.iter().find(|c| c.status == Status::Fail).unwrap();
    assert_eq!(c.name, "Service selection");
    assert_eq!(c.object.as_deref(), Some("ServiceMonitor/monitoring/argo-monitor"));
    assert!(c.message.contains("app=argo-monitoring-service"), "{}", c.message);
}

#[test]
fn namespace_the_selector_does_not_admit() {
    let text = with_prometheus(
        &GENERATED.replace("matchNames:\n      - \"tools\"", "matchNames:\n      - \"staging\""),
    );
    let report = run(&text, &Options::default());
    let c = report.checks.iter().find(|c| c.status == Status::Fail).unwrap();
    assert!(
        c.fix
            .as_deref()
            .unwrap()
            .contains("namespace tools, which spec.namespaceSelector does not admit"),
        "{c:?}"
    );
}

#[test]
fn port_name_the_service_lacks() {
    let text = with_prometheus(&GENERATED.replace("- port: \"prometheus\"", "- port: \"metrics\""));
    let f = failures(&run(&text, &Options::default()));
    assert!(
        f.iter().any(|(n, m)| n == "Service port"
            && m.contains("no port named metrics (ports: http, prometheus)")),
        "{f:?}"
    );
}

#[test]
fn target_port_that_no_container_declares() {
    let text = with_prometheus(&GENERATED.replace(
        "      port: 9090\n      targetPort: 9090",
        "      port: 9090\n      targetPort: 9091",
    ));
    let f = failures(&run(&text, &Options::default()));
    assert!(
        f.iter()
            .any(|(n, m)| n == "container port" && m.contains("no container declares port 9091")),
        "{f:?}"
    );
}

/// `GENERATED` without its documents of `kind`.
fn without_kind(kind: &str) -> String {
    GENERATED
        .split("---\n")
        .filter(|d| !d.contains(&format!("\nkind: {kind}\n")))
        .collect::<Vec<_>>()
        .join("---\n")
}

#[test]
fn metrics_port_still_captured_by_istio() {
    // Neither exclusion: no annotation, no PeerAuthentication.
    let text = with_prometheus(
        &without_kind("PeerAuthentication")
            .replace("        traffic.sidecar.istio.io/excludeInboundPorts: \"9090\"\n", ""),
    );
    let f = failures(&run(&text, &Options::default()));
    assert!(f.iter().any(|(n, m)| n == "Istio" && m.contains("STRICT mTLS")), "{f:?}");
    // A PeerAuthentication with the port PERMISSIVE mends it.
    let pa = "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: \
        {name: m, namespace: tools}\nspec:\n  selector: {matchLabels: {run: identity-app}}\n  portLevelMtls:\n    \"9090\": {mode: PERMISSIVE}\n";
    assert!(!run(&format!("{text}{pa}"), &Options::default()).failed());
}

#[test]
fn monitor_path_that_the_sidecar_does_not_route() {
    let text = with_prometheus(&GENERATED.replace("path: \"/prometheus\"", "path: \"/metrics\""));
    let f = failures(&run(&text, &Options::default()));
    assert!(f.iter().any(|(n, m)| n == "sidecar route" && m.contains("404")), "{f:?}");
}

#[test]
fn network_policy_that_blocks_prometheus() {
    let text = with_prometheus(&GENERATED.replace(
        "\"kubernetes.io/metadata.name\": \"monitoring\"",
        "\"kubernetes.io/metadata.name\": \"elsewhere\"",
    ));
    let f = failures(&run(&text, &Options::default()));
    assert!(
        f.iter().any(|(n, m)| n == "NetworkPolicy" && m.contains("none admits port 9090")),
        "{f:?}"
    );
}

#[test]
fn operator_rules_scrape_timeout_and_schema() {
    let text = with_prometheus(&GENERATED.replace(
        "interval: \"30s\"",
        "interval: \"30s\"\n      scrapeTimeout: \"1m\"\n      intervall: 5s",
    ));
    let f = failures(&run(&text, &Options::default()));
    assert!(
        f.iter().any(|(n, m)| n == "scrapeTimeout" && m.contains("drops this monitor")),
        "{f:?}"
    );
    assert!(
        f.iter().any(|(n, m)| n == "schema" && m.contains("intervall: unknown field")),
        "{f:?}"
    );
}

#[test]
fn unparseable_yaml_is_an_error_naming_the_source() {
    let err = load(&["-".to_string()], || Ok("kind: [x".into())).unwrap_err().to_string();
    assert!(err.starts_with("stdin: not YAML"), "{err}");
    let err = load(&["/no/such/dir".to_string()], || unreachable!()).unwrap_err().to_string();
    assert!(err.starts_with("/no/such/dir:"), "{err}");
}

#[test]
fn a_symlink_loop_is_walked_once_and_a_file_linked_twice_is_read_once() {
    let dir = std::env::temp_dir().join(format!("meshscrape-verify-loop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/objects.yaml"), GENERATED).unwrap();
    std::os::unix::fs::symlink(&dir, dir.join("sub/back-to-top")).unwrap();
    std::os::unix::fs::symlink(dir.join("sub/objects.yaml"), dir.join("same.yaml")).unwrap();
    let objects = load(&[dir.display().to_string()], || unreachable!()).unwrap();
    let once = load(&["-".to_string()], || Ok(GENERATED.to_string())).unwrap();
    assert_eq!(
        objects.docs.len(),
        once.docs.len(),
        "every object once, however many ways it is reachable"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_second_prometheus_that_does_not_select_the_monitor_is_a_note_not_a_failure() {
    let other = "---\napiVersion: monitoring.coreos.com/v1\nkind: Prometheus\nmetadata: {name: \
                 apps, namespace: apps-monitoring}\nspec:\n  serviceMonitorSelector:\n    \
                 matchLabels: {team: apps}\n";
    let report = run(&format!("{}{other}", with_prometheus(GENERATED)), &Options::default());
    assert_eq!(failures(&report), Vec::<(String, String)>::new());
    let selection: Vec<_> =
        report.checks.iter().filter(|c| c.name == "Prometheus selection").collect();
    assert!(
        selection.iter().any(|c| c.status == Status::Pass
            && c.message.contains("Prometheus/monitoring/kube-prometheus"))
    );
    let note = selection.iter().find(|c| c.status == Status::Info).expect("a note");
    assert!(note.message.contains("Prometheus/apps-monitoring/apps"), "{}", note.message);
    assert!(note.fix.as_deref().unwrap().starts_with("only if this Prometheus"), "{note:?}");

    // With only the one that does not select it, the link fails.
    let alone = GENERATED.to_string() + other;
    let f = failures(&run(&alone, &Options::default()));
    assert!(
        f.iter().any(|(name, m)| name == "Prometheus selection" && m.contains("apps")),
        "{f:?}"
    );
}

/// The example with Namespace `tools` labelled `labels` (YAML flow map) and `extra` documents.
fn in_namespace(labels: &str, text: &str, extra: &str) -> Report {
    let ns = format!(
        "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: tools, labels: {labels}}}\n"
    );
    run(&format!("{}{ns}{extra}", with_prometheus(text)), &Options::default())
}

fn named<'a>(report: &'a Report, name: &str) -> &'a crate::report::Check {
    report.checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no {name} check"))
}

const ANNOTATION: &str = "        traffic.sidecar.istio.io/excludeInboundPorts: \"9090\"\n";

#[test]
fn the_data_plane_comes_from_the_namespace_and_the_pod_label_wins() {
    let ambient = in_namespace("{istio.io/dataplane-mode: ambient}", GENERATED, "");
    assert!(named(&ambient, "Istio data plane").message.starts_with("ambient (namespace tools"));
    assert!(!ambient.failed(), "{}", ambient.render(crate::report::Format::Human, false));
    let sidecar = in_namespace("{istio-injection: enabled}", GENERATED, "");
    assert!(named(&sidecar, "Istio data plane").message.starts_with("sidecar ("));
    let rev = in_namespace("{istio.io/rev: 1-25}", GENERATED, "");
    assert!(named(&rev, "Istio data plane").message.contains("istio.io/rev=1-25"));
    let outside = in_namespace("{team: a}", GENERATED, "");
    assert!(named(&outside, "Istio data plane").message.starts_with("none"));
    // The pod's label wins over the namespace's.
    let opted_out = GENERATED.replace(
        "        \"run\": \"identity-app\"\n      annotations:",
        "        \"run\": \"identity-app\"\n        istio.io/dataplane-mode: none\n      annotations:",
    );
    let r = in_namespace("{istio.io/dataplane-mode: ambient}", &opted_out, "");
    assert!(
        named(&r, "Istio data plane").message.contains("the pod's istio.io/dataplane-mode is none")
    );
    // Without a Namespace object: unknown, judged for both.
    let r = run(&with_prometheus(GENERATED), &Options::default());
    assert!(named(&r, "Istio data plane").message.starts_with("unknown"));
    assert!(named(&r, "Istio").message.contains("under sidecar mode port 9090 is excluded"));
}

#[test]
fn under_ambient_the_annotation_alone_fails_and_the_workload_policy_passes() {
    let annotation_only = without_kind("PeerAuthentication");
    let r = in_namespace("{istio.io/dataplane-mode: ambient}", &annotation_only, "");
    let istio = named(&r, "Istio");
    assert_eq!(istio.status, Status::Fail);
    assert!(
        istio.message.contains("ztunnel ignores the excludeInboundPorts annotation"),
        "{}",
        istio.message
    );
    assert!(istio.fix.as_deref().unwrap().contains("Istio 1.25+ under ambient"));
    // The same under sidecar mode passes.
    let r = in_namespace("{istio-injection: enabled}", &annotation_only, "");
    assert_eq!(named(&r, "Istio").status, Status::Pass);
    // Unknown: fails, because of ambient.
    let r = run(&with_prometheus(&annotation_only), &Options::default());
    assert!(
        named(&r, "Istio").message.starts_with("under ambient"),
        "{}",
        named(&r, "Istio").message
    );
    // The PeerAuthentication alone passes under ambient and under sidecar mode.
    let policy_only = GENERATED.replace(ANNOTATION, "");
    for labels in ["{istio.io/dataplane-mode: ambient}", "{istio-injection: enabled}"] {
        let r = in_namespace(labels, &policy_only, "");
        assert_eq!(named(&r, "Istio").status, Status::Pass, "{labels}");
    }
}

#[test]
fn ambient_ignores_root_and_selector_less_policies_and_names_a_service_port_key() {
    let neither = without_kind("PeerAuthentication").replace(ANNOTATION, "");
    let root = "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: \
                mesh, namespace: istio-system}\nspec:\n  portLevelMtls:\n    \"9090\": {mode: \
                PERMISSIVE}\n";
    let r = in_namespace("{istio.io/dataplane-mode: ambient}", &neither, root);
    let istio = named(&r, "Istio");
    assert_eq!(istio.status, Status::Fail);
    assert!(
        istio.message.contains("PeerAuthentication/istio-system/mesh")
            && istio.message.contains("root namespace")
    );
    // Keyed by the Service port where it differs from the container port.
    let service_port = neither.replace(
        "      port: 9090\n      targetPort: 9090",
        "      port: 19090\n      targetPort: 9090",
    );
    let keyed = "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: \
                 m, namespace: tools}\nspec:\n  selector: {matchLabels: {run: identity-app}}\n  \
                 portLevelMtls:\n    \"19090\": {mode: PERMISSIVE}\n";
    let r = in_namespace("{istio.io/dataplane-mode: ambient}", &service_port, keyed);
    let istio = named(&r, "Istio");
    assert!(
        istio.message.contains("keys portLevelMtls by 19090, the Service port")
            && istio.message.contains("container port 9090"),
        "{}",
        istio.message
    );
}

#[test]
fn the_workload_mode_resolves_workload_then_namespace_then_root() {
    let neither = without_kind("PeerAuthentication").replace(ANNOTATION, "");
    let pa = |name: &str, ns: &str, selector: bool, mode: &str| {
        format!(
            "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: \
             {name}, namespace: {ns}}}\nspec:\n{}  mtls: {{mode: {mode}}}\n",
            if selector { "  selector: {matchLabels: {run: identity-app}}\n" } else { "" }
        )
    };
    let ambient = "{istio.io/dataplane-mode: ambient}";
    // Mesh-wide PERMISSIVE: plaintext is admitted.
    let r = in_namespace(ambient, &neither, &pa("mesh", "istio-system", false, "PERMISSIVE"));
    assert!(named(&r, "Istio").message.contains("mTLS is PERMISSIVE for the workload"));
    // The namespace's STRICT overrides the root's PERMISSIVE.
    let both =
        pa("mesh", "istio-system", false, "PERMISSIVE") + &pa("ns", "tools", false, "STRICT");
    assert_eq!(named(&in_namespace(ambient, &neither, &both), "Istio").status, Status::Fail);
    // And the workload's PERMISSIVE overrides the namespace's STRICT.
    let all = both + &pa("w", "tools", true, "PERMISSIVE");
    let r = in_namespace(ambient, &neither, &all);
    assert!(
        named(&r, "Istio").message.contains("PeerAuthentication/tools/w"),
        "{}",
        named(&r, "Istio").message
    );
}

#[test]
fn authorization_policies_that_deny_the_plaintext_scrape_are_named() {
    let policy = |name: &str, spec: &str| {
        format!(
            "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: \
             {name}, namespace: tools}}\nspec:\n  selector: {{matchLabels: {{run: identity-app}}}}\n{spec}"
        )
    };
    let ambient = "{istio.io/dataplane-mode: ambient}";
    let principals = policy(
        "frontend-only",
        "  action: ALLOW\n  rules:\n    - from: [{source: {principals: [cluster.local/ns/web/sa/web]}}]\n",
    );
    let r = in_namespace(ambient, GENERATED, &principals);
    let authz = named(&r, "AuthorizationPolicy");
    assert_eq!(authz.status, Status::Fail);
    assert!(authz.message.contains("AuthorizationPolicy/tools/frontend-only"), "{}", authz.message);
    assert!(authz.fix.as_deref().unwrap().contains("ports: [\"9090\"]"));
    // A rule for the metrics port from anyone admits it.
    let admitted = principals + "    - to: [{operation: {ports: [\"9090\"]}}]\n";
    assert_eq!(
        named(&in_namespace(ambient, GENERATED, &admitted), "AuthorizationPolicy").status,
        Status::Pass
    );
    // Allow-nothing denies it; so does a DENY of requests without a principal.
    let nothing = policy("allow-nothing", "");
    assert_eq!(
        named(&in_namespace(ambient, GENERATED, &nothing), "AuthorizationPolicy").status,
        Status::Fail
    );
    let deny = policy(
        "deny-anonymous",
        "  action: DENY\n  rules:\n    - from: [{source: {notPrincipals: [\"*\"]}}]\n",
    );
    let r = in_namespace(ambient, GENERATED, &deny);
    assert!(named(&r, "AuthorizationPolicy").message.contains("DENY policy"), "{r:?}");
    // ... unless the metrics port is left out of it.
    let spared =
        deny.replace("[\"*\"]}}]", "[\"*\"]}}]\n      to: [{operation: {notPorts: [\"9090\"]}}]");
    assert_eq!(
        named(&in_namespace(ambient, GENERATED, &spared), "AuthorizationPolicy").status,
        Status::Pass
    );
}

#[test]
fn a_service_selecting_none_of_the_given_workloads_fails_and_with_none_given_warns() {
    let text = with_prometheus(&GENERATED.replace(
        "spec:\n  type: ClusterIP\n  selector:\n    \"run\": \"identity-app\"",
        "spec:\n  type: ClusterIP\n  selector:\n    \"run\": \"identity-api\"",
    ));
    let f = failures(&run(&text, &Options::default()));
    assert!(
        f.iter().any(|(n, m)| n == "workload"
            && m.contains("matches none of the workloads in namespace tools (Deployment/tools/identity-service)")),
        "{f:?}"
    );
    let r = run(&with_prometheus(&without_kind("Deployment")), &Options::default());
    assert_eq!(named(&r, "workload").status, Status::Warn);
}

#[test]
fn a_dump_of_thousands_of_documents_is_read_whole() {
    // serde-saphyr's default budget stopped at 1,024 documents, fewer than gen writes for 300
    // namespaces and than a typical `kubectl get -A -o yaml`.
    let many: String = (0..5_000)
        .map(|i| {
            format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}, namespace: n{i}}}\n"
            )
        })
        .collect();
    let objects = load(&["-".to_string()], || Ok(format!("{many}---\n{GENERATED}"))).unwrap();
    assert!(objects.docs.len() > 5_000);
    assert!(!check(&objects, &Options::default()).checks.is_empty());
}

#[test]
fn a_network_policy_may_name_the_port_or_cover_it_with_end_port() {
    let np_port = "        - protocol: TCP\n          port: 9090\n    # Once a policy";
    assert!(GENERATED.contains(np_port));
    for (written, admitted) in [
        ("\"prometheus\"", true),
        ("\"http\"", false),
        ("9000\n          endPort: 9100", true),
        ("9000\n          endPort: 9089", false),
    ] {
        let text = with_prometheus(&GENERATED.replace(
            np_port,
            &format!("        - protocol: TCP\n          port: {written}\n    # Once a policy"),
        ));
        let r = run(&text, &Options::default());
        assert_eq!(named(&r, "NetworkPolicy").status == Status::Pass, admitted, "{written}");
    }
}

#[test]
fn the_route_check_reads_the_key_the_sidecars_config_flag_names() {
    // A second key that sorts first, with a config that would fail the route check.
    let decoy = "data:\n  a-notes.yaml: |\n    routes: [/other=/other]\n";
    let text = with_prometheus(&GENERATED.replacen("data:\n", decoy, 1));
    assert_eq!(named(&run(&text, &Options::default()), "sidecar route").status, Status::Pass);
    // --config naming a key the ConfigMap lacks: the sidecar would exit 64.
    let text = with_prometheus(
        &GENERATED.replace("/etc/meshscrape/sidecar.yaml", "/etc/meshscrape/other.yaml"),
    );
    let f = failures(&run(&text, &Options::default()));
    assert!(
        f.iter().any(|(n, m)| n == "sidecar config" && m.contains("no key other.yaml")),
        "{f:?}"
    );
}

#[test]
fn a_monitor_version_the_operator_does_not_serve_fails_its_schema_check() {
    let text = with_prometheus(&GENERATED.replace(
        "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor",
        "apiVersion: monitoring.coreos.com/v2\nkind: ServiceMonitor",
    ));
    let f = failures(&run(&text, &Options::default()));
    assert!(
        f.iter().any(|(n, m)| n == "schema" && m.contains("serves no ServiceMonitor v2")),
        "{f:?}"
    );
}
