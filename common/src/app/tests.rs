use super::*;

const MINIMAL: &str = "name: shop\nnamespaces: [tools]\nlabels: {app: shop}\ncontainer: \
    {image: shop:1, port: 8080}\nmonitor: {namespace: monitoring, labels: {release: kube-prometheus-stack}}\n";

fn parse(text: &str) -> Result<AppConfig, ConfigError> {
    AppConfig::from_yaml(Path::new("app.yaml"), text)
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Err(ConfigError::Invalid { problems }) => problems,
        other => panic!("expected invalid values, got {other:?}"),
    }
}

fn line(p: &Problem) -> u64 {
    match &p.origin {
        Origin::File { line, .. } => *line,
        _ => 0,
    }
}

#[test]
fn minimal_config_takes_the_seed_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.sidecar.port, 9090);
    assert_eq!(c.sidecar.port_name, "prometheus");
    assert_eq!(c.sidecar.image, DEFAULT_SIDECAR_IMAGE);
    assert_eq!(c.sidecar.resources.limits_memory, "15Mi");
    assert_eq!(c.sidecar.resources.requests_cpu, "50m");
    assert_eq!(c.sidecar.proxy.listen.port(), 9090);
    assert_eq!(c.sidecar.proxy.upstream.port(), 8080);
    assert_eq!(c.sidecar.proxy.routes.len(), 4, "the seed's route map");
    assert_eq!(c.monitor.kind, MonitorKind::ServiceMonitor);
    assert_eq!(c.monitor.path, "/prometheus");
    assert_eq!(c.monitor.interval, "30s");
    assert_eq!(c.service.name, "shop");
    assert_eq!(c.service.labels, c.pod_labels);
    // The data plane is not said, so the exclusion that works on both: annotation and policy.
    assert_eq!((c.istio, c.dataplane), (IstioMode::Both, None));
    assert!(c.network_policy.enabled);
    assert_eq!(c.network_policy.namespace_labels["kubernetes.io/metadata.name"], "monitoring");
}

#[test]
fn a_bad_name_is_reported_once_not_again_for_the_names_derived_from_it() {
    // container.name, service.name and monitor.name default to name; found by the config fuzz
    // test, which saw "the default: service.name: ..." beside the real problem.
    let p = problems(&MINIMAL.replace("name: shop", "name: Shop_App"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!((p[0].field.as_str(), line(&p[0])), ("name", 1));
    let p = problems(&MINIMAL.replace("port: 8080", "port: 0"));
    assert_eq!(
        p.iter().map(|p| p.field.as_str()).collect::<Vec<_>>(),
        ["container.port"],
        "not service.port too"
    );
}

#[test]
fn a_clash_with_a_default_names_the_file_and_the_key_to_set() {
    let p = problems(&MINIMAL.replace("port: 8080", "port: 9090"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].origin, Origin::Unset { path: "app.yaml".into() });
    assert_eq!(
        p[0].to_string(),
        "app.yaml (key not set, default used): sidecar.port: 9090 is also the app's port; set \
            sidecar.port to another, e.g. 9091"
    );
}

#[test]
fn misspelt_field_names_the_line() {
    let err = parse(&MINIMAL.replace("container:", "contaner:")).unwrap_err();
    let ConfigError::Syntax { line, message, .. } = &err else { panic!("{err}") };
    assert_eq!(*line, 4);
    assert!(message.contains("contaner"), "{message}");
}

#[test]
fn wrong_type_names_the_line() {
    let err = parse(&MINIMAL.replace("port: 8080", "port: eighty")).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { line: 4, .. }), "{err}");
}

#[test]
fn wrong_types_are_said_with_the_key_path_the_value_and_what_would_be_valid() {
    let block = "name: shop\nnamespaces: tools\nlabels: {app: shop}\ncontainer:\n  image: shop:1\n  \
                 port: eighty\nmonitor: {namespace: monitoring, labels: {release: x}}\n";
    let err = parse(block).unwrap_err().to_string();
    assert!(
        err.contains("app.yaml:2:13: namespaces: `tools` is not a list; write a list"),
        "{err}"
    );
    let err =
        parse(&block.replace("namespaces: tools", "namespaces: [tools]")).unwrap_err().to_string();
    assert_eq!(err, "app.yaml:6:9: container.port: `eighty` is not a whole number");
}

#[test]
fn port_out_of_range_names_field_line_and_range() {
    let p = problems(&MINIMAL.replace("port: 8080", "port: 70000"));
    assert_eq!(p[0].field, "container.port");
    assert_eq!(line(&p[0]), 4);
    assert!(p[0].message.contains("1 to 65535"));
}

#[test]
fn names_kubernetes_would_reject() {
    let p = problems(
        &MINIMAL.replace("name: shop", "name: Shop_Service").replace("[tools]", "[tools, Tools]"),
    );
    let fields: Vec<_> = p.iter().map(|p| p.field.as_str()).collect();
    assert!(fields.contains(&"name") && fields.contains(&"namespaces[1]"), "{fields:?}");
    assert!(p[0].message.contains("DNS-1123"));
}

#[test]
fn scrape_timeout_longer_than_interval() {
    let text = MINIMAL.replace(
        "labels: {release: kube-prometheus-stack}}",
        "labels: {release: x}, interval: 15s,\n  scrapeTimeout: 20s}",
    );
    let p = problems(&text);
    assert_eq!(p[0].field, "monitor.scrapeTimeout");
    assert_eq!(line(&p[0]), 6);
    assert!(p[0].message.contains("drops such a monitor"));
}

#[test]
fn monitor_path_must_be_a_sidecar_route() {
    let p = problems(
        &MINIMAL.replace("namespace: monitoring", "namespace: monitoring, path: /metrics"),
    );
    assert_eq!(p[0].field, "monitor.path");
    assert!(p[0].message.contains("404"), "{}", p[0].message);
}

#[test]
fn sidecar_route_problems_are_prefixed_and_located() {
    let text = format!("{MINIMAL}sidecar:\n  routes:\n    - /-/x=/x\n");
    let p = problems(&text);
    assert_eq!(p[0].field, "sidecar.routes[0]");
    assert_eq!(line(&p[0]), 8);
}

#[test]
fn sidecar_port_clashing_with_app_port() {
    let p = problems(&format!("{MINIMAL}sidecar: {{port: 8080}}\n"));
    assert!(
        p.iter().any(|p| p.field == "sidecar.port" && p.message.contains("also the app's port"))
    );
}

#[test]
fn https_scheme_and_bad_quantities() {
    let text = format!(
        "{}sidecar: {{resources: {{limits: {{memory: 15MB}}}}}}\n",
        MINIMAL.replace("namespace: monitoring", "namespace: monitoring, scheme: https")
    );
    let fields: Vec<_> = problems(&text).into_iter().map(|p| p.field).collect();
    assert!(
        fields.contains(&"monitor.scheme".to_string())
            && fields.contains(&"sidecar.resources.limits.memory".to_string()),
        "{fields:?}"
    );
}

#[test]
fn namespace_override_replaces_and_deduplicates() {
    let c =
        parse(MINIMAL).unwrap().with_namespaces(vec!["a".into(), "b".into(), "a".into()]).unwrap();
    assert_eq!(c.namespaces, ["a", "b"]);
    assert!(parse(MINIMAL).unwrap().with_namespaces(vec!["Bad".into()]).is_err());
}

#[test]
fn scrape_protocols_are_the_operators_each_named_with_its_line() {
    let text = MINIMAL.replace(
        "monitor: {namespace: monitoring,",
        "monitor: {scrapeProtocols: [PrometheusText0.0.4, Protobuf, PrometheusText0.0.4], \
         fallbackScrapeProtocol: text, scrapeClass: \"\", namespace: monitoring,",
    );
    let ps = problems(&text);
    let fields: Vec<&str> = ps.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "monitor.scrapeProtocols[1]",
            "monitor.scrapeProtocols[2]",
            "monitor.fallbackScrapeProtocol",
            "monitor.scrapeClass"
        ]
    );
    assert!(
        ps[0].message.contains("`Protobuf` is not a scrape protocol; use one of PrometheusProto")
    );
    assert!(ps[1].message.contains("listed twice"));
    assert!(ps.iter().all(|p| line(p) == 5), "{ps:?}");
}

#[test]
fn the_default_exclusion_follows_the_data_plane() {
    for (dataplane, mode) in
        [("ambient", IstioMode::PeerAuthentication), ("sidecar", IstioMode::ExcludeAnnotation)]
    {
        let c = parse(&format!("{MINIMAL}istio: {{dataplane: {dataplane}}}\n")).unwrap();
        assert_eq!(c.istio, mode, "{dataplane}");
        assert_eq!(c.dataplane.map(Dataplane::as_str), Some(dataplane));
    }
}

#[test]
fn the_annotation_alone_under_ambient_is_refused_naming_both_keys() {
    let ps =
        problems(&format!("{MINIMAL}istio:\n  dataplane: ambient\n  mode: exclude-annotation\n"));
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0].field, "istio.mode");
    assert_eq!(line(&ps[0]), 8);
    for needle in ["istio.dataplane: ambient", "ztunnel ignores", "peer-authentication or both"] {
        assert!(ps[0].message.contains(needle), "{needle}: {}", ps[0].message);
    }
    let ps = problems(&format!("{MINIMAL}istio: {{dataplane: waypoint}}\n"));
    assert!(ps[0].message.contains("use sidecar or ambient"), "{ps:?}");
}

#[test]
fn the_default_limits_fit_the_default_memory_limit_and_larger_ones_must_be_paid_for() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.sidecar.resources.limits_memory, crate::proxy::defaults::MEMORY_LIMIT);
    let limit = crate::names::quantity_bytes(&c.sidecar.resources.limits_memory).unwrap();
    assert!(crate::proxy::sizing::limit_for(&c.sidecar.proxy.limits) <= limit);

    // The old defaults (32 in flight, 256 connections) do not fit 15Mi: refused, with the line,
    // the limit that would fit and the value of maxInFlight that would.
    let text =
        format!("{MINIMAL}sidecar:\n  limits:\n    maxInFlight: 32\n    maxConnections: 256\n");
    let p = problems(&text);
    let fit = p.iter().find(|p| p.field == "sidecar.limits").expect("refused");
    assert!(line(fit) > 0, "{fit:?}");
    assert!(
        fit.message.contains("32 scrapes in flight and 256 connections")
            && fit.message.contains("sidecar.resources.limits.memory is 15Mi")
            && fit.message.contains("lower sidecar.limits.maxInFlight to ")
            && fit.message.contains("need a memory limit of at least 24Mi"),
        "{}",
        fit.message
    );
    // Paid for with a larger memory limit, they are accepted.
    let paid = format!(
        "{MINIMAL}sidecar:\n  resources: {{limits: {{memory: 24Mi}}}}\n  limits:\n    \
            maxInFlight: 32\n    maxConnections: 256\n"
    );
    assert!(parse(&paid).is_ok(), "{:?}", problems(&paid));
}

#[test]
fn sidecar_access_becomes_mounted_files_and_half_a_pair_is_an_error() {
    let tls = "sidecar:\n  auth:\n    bearerTokenSecret: {name: tok, key: token}\n    allowedClients: [10.0.0.0/8]\n  \
        tls:\n    secret: app-tls\n    serverName: app.metrics\n    caSecret: {name: ca, key: ca.crt}\n";
    let c = parse(&format!("{MINIMAL}{tls}")).unwrap();
    let proxy = &c.sidecar.proxy;
    assert_eq!(
        proxy.auth.bearer_token_file.as_deref(),
        Some(Path::new("/var/run/meshscrape/token/token"))
    );
    assert_eq!(proxy.tls.as_ref().unwrap().cert_file, Path::new("/var/run/meshscrape/tls/tls.crt"));
    assert!(proxy.tls.as_ref().unwrap().client_ca_file.is_none());
    assert_eq!(c.sidecar.tls.as_ref().unwrap().server_name, "app.metrics");

    // A client CA without Prometheus's certificate, a bad block, a bad key and http to a TLS port.
    let bad = format!(
        "{}{tls}    clientCASecret: {{name: cca, key: 'c a'}}\n",
        MINIMAL.replace("namespace: monitoring", "namespace: monitoring, scheme: http")
    )
    .replace("10.0.0.0/8", "10.0.0.1/8");
    let p = problems(&bad);
    let fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
    for want in [
        "sidecar.tls.clientCASecret.key",
        "sidecar.tls.clientCertSecret",
        "sidecar.auth.allowedClients[0]",
        "monitor.scheme",
    ] {
        assert!(fields.contains(&want), "{want} not in {fields:?}");
    }
    let scheme = p.iter().find(|p| p.field == "monitor.scheme").unwrap();
    assert!(scheme.message.contains("must be https"), "{}", scheme.message);
    assert!(p.iter().all(|p| line(p) > 0), "every problem has its line: {p:?}");
}
