//! Every option that changes the output, checked on the typed objects.

use meshscrape_common::schema::{crd_schema, validate};
use meshscrape_gen::objects::Object;
use meshscrape_gen::templates::Templates;
use meshscrape_gen::{GenError, render};

use super::support::{config_with, crds, render_config, value};

fn kinds(rendered: &[meshscrape_gen::Rendered]) -> Vec<&str> {
    rendered.iter().map(|r| r.kind.as_str()).collect()
}

fn annotations(
    rendered: &[meshscrape_gen::Rendered],
) -> std::collections::BTreeMap<String, String> {
    rendered
        .iter()
        .find_map(|r| match &r.object {
            Object::Deployment(d) => {
                d.spec.as_ref()?.template.metadata.as_ref()?.annotations.clone()
            }
            _ => None,
        })
        .unwrap()
}

#[test]
fn peer_authentication_mode_emits_a_valid_port_level_policy_and_no_annotation() {
    let rendered =
        render_config(&config_with(|t| t.replace("  mode: both", "  mode: peer-authentication")));
    assert_eq!(
        kinds(&rendered),
        [
            "ConfigMap",
            "Deployment",
            "Service",
            "PeerAuthentication",
            "NetworkPolicy",
            "ServiceMonitor"
        ]
    );
    let pa = rendered.iter().find(|r| r.kind == "PeerAuthentication").unwrap();
    let Object::PeerAuthentication(typed) = &pa.object else { unreachable!() };
    assert_eq!(typed.spec.port_level_mtls["9090"].mode, "PERMISSIVE");
    assert_eq!(typed.spec.selector.as_ref().unwrap().match_labels["run"], "identity-app");
    let crds = crds();
    assert_eq!(
        validate(crd_schema(&crds, "PeerAuthentication", "v1").unwrap(), &value(pa)),
        Vec::<String>::new()
    );
    assert!(!annotations(&rendered).contains_key("traffic.sidecar.istio.io/excludeInboundPorts"));
}

#[test]
fn both_mode_emits_annotation_and_policy_annotation_only_the_one_none_neither() {
    let both = render_config(&config_with(|t| t));
    assert!(kinds(&both).contains(&"PeerAuthentication"));
    assert!(annotations(&both).contains_key("traffic.sidecar.istio.io/excludeInboundPorts"));
    let annotation =
        render_config(&config_with(|t| t.replace("  mode: both", "  mode: exclude-annotation")));
    assert!(!kinds(&annotation).contains(&"PeerAuthentication"));
    assert!(annotations(&annotation).contains_key("traffic.sidecar.istio.io/excludeInboundPorts"));
    let none = render_config(&config_with(|t| t.replace("  mode: both", "  mode: none")));
    assert!(!kinds(&none).contains(&"PeerAuthentication"));
    assert!(!annotations(&none).contains_key("traffic.sidecar.istio.io/excludeInboundPorts"));
    let np = none.iter().find(|r| r.kind == "NetworkPolicy").unwrap();
    assert!(!np.text.contains("15090"), "no Istio ports without Istio");
}

#[test]
fn network_policy_can_be_switched_off_or_narrowed_to_prometheus_pods() {
    let off = render_config(&config_with(|t| {
        t.replace("networkPolicy:\n  enabled: true", "networkPolicy:\n  enabled: false")
    }));
    assert!(!kinds(&off).contains(&"NetworkPolicy"));
    let narrowed = render_config(&config_with(|t| {
        t.replace(
            "networkPolicy:\n  enabled: true",
            "networkPolicy:\n  podLabels: {app.kubernetes.io/name: prometheus}",
        )
    }));
    let Object::NetworkPolicy(np) =
        &narrowed.iter().find(|r| r.kind == "NetworkPolicy").unwrap().object
    else {
        unreachable!()
    };
    let rule = &np.spec.as_ref().unwrap().ingress.as_ref().unwrap()[0];
    let peer = &rule.from.as_ref().unwrap()[0];
    assert_eq!(
        peer.namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["kubernetes.io/metadata.name"],
        "monitoring"
    );
    assert_eq!(
        peer.pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["app.kubernetes.io/name"],
        "prometheus"
    );
    assert_eq!(
        rule.ports.as_ref().unwrap()[0].port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9090))
    );
}

#[test]
fn pod_monitor_replaces_the_service_monitor_and_validates() {
    let rendered =
        render_config(&config_with(|t| t.replace("kind: ServiceMonitor", "kind: PodMonitor")));
    assert!(!kinds(&rendered).contains(&"ServiceMonitor"));
    let pm = rendered.iter().find(|r| r.kind == "PodMonitor").unwrap();
    let Object::PodMonitor(typed) = &pm.object else { unreachable!() };
    assert_eq!(typed.spec.pod_metrics_endpoints[0].port.as_deref(), Some("prometheus"));
    assert_eq!(typed.spec.selector.match_labels.as_ref().unwrap()["run"], "identity-app");
    let crds = crds();
    assert_eq!(
        validate(crd_schema(&crds, "PodMonitor", "v1").unwrap(), &value(pm)),
        Vec::<String>::new()
    );
}

#[test]
fn monitor_fields_reach_the_endpoint() {
    let rendered = render_config(&config_with(|t| {
        t.replace("interval: 30s", "interval: 1m\n  scrapeTimeout: 15s\n  jobLabel: app")
            .replace("honorLabels: true", "honorLabels: false")
    }));
    let Object::ServiceMonitor(sm) = &rendered.last().unwrap().object else {
        panic!("last is the monitor")
    };
    let e = &sm.spec.endpoints[0];
    assert_eq!(
        (e.interval.as_deref(), e.scrape_timeout.as_deref(), e.honor_labels),
        (Some("1m"), Some("15s"), Some(false))
    );
    assert_eq!(sm.spec.job_label.as_deref(), Some("app"));
}

#[test]
fn prometheus_3_monitor_fields_render_valid_against_the_operators_crds_for_both_kinds() {
    const FIELDS: &str = "interval: 30s\n  scrapeClass: istio-mtls\n  scrapeProtocols: \
                          [PrometheusText1.0.0, OpenMetricsText1.0.0]\n  fallbackScrapeProtocol: \
                          PrometheusText0.0.4";
    let crds = crds();
    for kind in ["ServiceMonitor", "PodMonitor"] {
        let rendered = render_config(&config_with(|t| {
            t.replace("kind: ServiceMonitor", &format!("kind: {kind}"))
                .replace("interval: 30s", FIELDS)
        }));
        let monitor = rendered.last().unwrap();
        let v = value(monitor);
        assert_eq!(v["spec"]["scrapeClass"], "istio-mtls", "{kind}");
        assert_eq!(
            v["spec"]["scrapeProtocols"],
            serde_json::json!(["PrometheusText1.0.0", "OpenMetricsText1.0.0"]),
            "{kind}"
        );
        assert_eq!(v["spec"]["fallbackScrapeProtocol"], "PrometheusText0.0.4", "{kind}");
        assert_eq!(
            validate(crd_schema(&crds, kind, "v1").unwrap(), &v),
            Vec::<String>::new(),
            "{kind}"
        );
    }
    // Unset, none of them is rendered: Prometheus's defaults apply.
    let rendered = render_config(&config_with(|t| t));
    let v = value(rendered.last().unwrap());
    for key in ["scrapeClass", "scrapeProtocols", "fallbackScrapeProtocol"] {
        assert!(v["spec"].get(key).is_none(), "{key}");
    }
}

#[test]
fn sidecar_port_name_routes_and_resources_propagate() {
    let rendered = render_config(&config_with(|t| {
        t.replace("  port: 9090\n  portName: prometheus", "  port: 9191\n  portName: metrics")
            .replace("path: /prometheus", "path: /metrics")
            .replace("    - /=/prometheus\n", "    - /metrics=/actuator/prometheus\n")
            .replace("limits: {cpu: 100m, memory: 15Mi}", "limits: {cpu: 200m, memory: 32Mi}")
    }));
    let text = meshscrape_gen::output::stream(&rendered);
    for needle in [
        "traffic.sidecar.istio.io/excludeInboundPorts: \"9191\"",
        "- name: \"metrics\"\n              containerPort: 9191",
        "- name: \"metrics\"\n      port: 9191\n      targetPort: 9191",
        "listen: 0.0.0.0:9191",
        "- /metrics=/actuator/prometheus",
        "memory: \"32Mi\"",
        "- port: \"metrics\"\n      path: \"/metrics\"",
    ] {
        assert!(text.contains(needle), "missing {needle:?}");
    }
}

#[test]
fn templates_folder_overrides_one_template_and_strict_undefined_fails_naming_it() {
    let dir = std::env::temp_dir().join(format!("meshscrape-gen-templates-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let custom = super::support::root().join("templates/service.yaml.j2");
    let text = std::fs::read_to_string(custom)
        .unwrap()
        .replace("type: ClusterIP", "type: ClusterIP\n  sessionAffinity: None");
    std::fs::write(dir.join("service.yaml.j2"), text).unwrap();
    let config = config_with(|t| t);
    let rendered = render(&config, &Templates::load(Some(&dir)).unwrap()).unwrap();
    let svc = rendered.iter().find(|r| r.kind == "Service").unwrap();
    assert!(svc.text.contains("sessionAffinity: None"));
    assert_eq!(svc.source, dir.join("service.yaml.j2").display().to_string());

    std::fs::write(
        dir.join("service.yaml.j2"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ servce.name }}\n",
    )
    .unwrap();
    let err = render(&config, &Templates::load(Some(&dir)).unwrap()).unwrap_err();
    assert!(matches!(err, GenError::Template { .. }), "{err}");
    assert!(
        err.to_string().contains("service.yaml.j2") && err.to_string().contains("undefined"),
        "{err}"
    );

    std::fs::write(dir.join("service.yaml.j2"), "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n  namespace: tools\nspec:\n  prots: []\n")
        .unwrap();
    let err = render(&config, &Templates::load(Some(&dir)).unwrap()).unwrap_err().to_string();
    assert!(err.contains("service.yaml.j2") && err.contains("spec.prots"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every Istio mode on every data plane: the pod annotation and the PeerAuthentication rendered,
/// or the error, in one snapshot (`generator__generator__options__istio_modes.snap`).
#[test]
fn istio_modes_by_data_plane_snapshot() {
    let mut out = String::new();
    for dataplane in ["(unset)", "sidecar", "ambient"] {
        for mode in ["(unset)", "exclude-annotation", "peer-authentication", "both", "none"] {
            let mut istio = String::from("istio:\n");
            if dataplane != "(unset)" {
                istio += &format!("  dataplane: {dataplane}\n");
            }
            if mode != "(unset)" {
                istio += &format!("  mode: {mode}\n");
            }
            if istio == "istio:\n" {
                istio.clear();
            }
            // The example with its istio section replaced.
            let example = std::fs::read_to_string(super::support::example()).unwrap();
            let (start, end) = (
                example.find("\nistio:\n").unwrap() + 1,
                example.find("\nnetworkPolicy:").unwrap() + 1,
            );
            let text = format!("{}{istio}{}", &example[..start], &example[end..]);
            out += &format!("## dataplane {dataplane}, mode {mode}\n");
            let config = meshscrape_common::AppConfig::from_yaml("app.yaml".as_ref(), &text);
            let config = match config {
                Ok(c) => c,
                Err(e) => {
                    out += &format!("error: {e}\n\n");
                    continue;
                }
            };
            let rendered = render_config(&config);
            let annotation = annotations(&rendered)
                .get("traffic.sidecar.istio.io/excludeInboundPorts")
                .cloned()
                .unwrap_or_else(|| "(none)".into());
            out += &format!("excludeInboundPorts: {annotation}\n");
            match rendered.iter().find(|r| r.kind == "PeerAuthentication") {
                Some(pa) => {
                    let v = value(pa);
                    out += &format!(
                        "PeerAuthentication: {}\n\n",
                        serde_json::to_string(&v["spec"]).unwrap()
                    );
                }
                None => out += "PeerAuthentication: (none)\n\n",
            }
        }
    }
    insta::assert_snapshot!("istio_modes", out);
}

#[test]
fn a_native_sidecar_renders_in_init_containers_with_a_startup_probe() {
    let rendered = render_config(&config_with(|t| {
        t.replace("  portName: prometheus\n", "  portName: prometheus\n  native: true\n")
    }));
    let Some(Object::Deployment(d)) =
        rendered.iter().find(|r| r.kind == "Deployment").map(|r| &r.object)
    else {
        panic!("a Deployment")
    };
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let names = |cs: &[k8s_openapi::api::core::v1::Container]| {
        cs.iter().map(|c| c.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&pod.containers), ["identity-app"]);
    let init = pod.init_containers.as_deref().unwrap();
    assert_eq!(names(init), ["meshscrape-proxy"]);
    assert_eq!(init[0].restart_policy.as_deref(), Some("Always"));
    let startup = init[0].startup_probe.as_ref().unwrap();
    assert_eq!(startup.http_get.as_ref().unwrap().path.as_deref(), Some("/-/ready"));
    assert_eq!(init[0].ports.as_ref().unwrap()[0].container_port, 9090);
}
