//! The "done when": for two namespaces every object validates against its schema, and in
//! each namespace ServiceMonitor -> Service port -> container port -> Istio exclusion holds.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use meshscrape_common::schema::{crd_schema, validate};
use meshscrape_common::{ProxyConfig, ProxyOverrides};
use meshscrape_gen::objects::Object;

use super::support::{config_with, crds, render_config, value};

#[test]
fn two_namespaces_render_valid_objects_with_an_unbroken_chain() {
    let config =
        config_with(|t| t).with_namespaces(vec!["tools".into(), "staging".into()]).unwrap();
    let rendered = render_config(&config);
    let crds = crds();

    // Every custom resource against its CRD schema; core kinds were parsed strictly by render().
    for r in &rendered {
        let v = value(r);
        let api = v["apiVersion"].as_str().unwrap();
        if let Some(version) =
            api.strip_prefix("monitoring.coreos.com/").or(api.strip_prefix("security.istio.io/"))
        {
            let schema = crd_schema(&crds, &r.kind, version)
                .unwrap_or_else(|| panic!("no schema for {} {version}", r.kind));
            assert_eq!(validate(schema, &v), Vec::<String>::new(), "{} {}", r.kind, r.name);
        }
        assert!(!r.namespace.is_empty());
    }

    let monitor = rendered.iter().find_map(|r| match &r.object {
        Object::ServiceMonitor(m) => Some(m),
        _ => None,
    });
    let monitor = monitor.expect("a ServiceMonitor");
    assert_eq!(monitor.metadata.namespace.as_deref(), Some("monitoring"));
    assert_eq!(monitor.metadata.labels.as_ref().unwrap()["prometheus"], "kube-prometheus");
    let endpoint = &monitor.spec.endpoints[0];

    for ns in ["tools", "staging"] {
        let in_ns = |kind: &'static str| {
            rendered
                .iter()
                .find(|r| r.namespace == ns && r.kind == kind)
                .unwrap_or_else(|| panic!("no {kind} in {ns}"))
        };
        // ServiceMonitor admits the namespace and selects the Service by its labels.
        let names = &monitor.spec.namespace_selector.as_ref().unwrap().match_names;
        assert!(names.iter().any(|n| n == ns), "{ns} not in {names:?}");
        let Object::Service(svc) = &in_ns("Service").object else { unreachable!() };
        let svc_labels = svc.metadata.labels.clone().unwrap();
        for (k, v) in monitor.spec.selector.match_labels.as_ref().unwrap() {
            assert_eq!(svc_labels.get(k), Some(v), "{ns}: Service lacks selected label {k}");
        }
        // The endpoint's port is a named Service port whose targetPort is a declared container port.
        let spec = svc.spec.as_ref().unwrap();
        let port = spec
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .find(|p| p.name.as_deref() == endpoint.port.as_deref())
            .expect("named port");
        let IntOrString::Int(target) = port.target_port.clone().unwrap() else {
            panic!("targetPort must be numeric")
        };
        let Object::Deployment(dep) = &in_ns("Deployment").object else { unreachable!() };
        let template = dep.spec.as_ref().unwrap().template.clone();
        let pod_labels = template.metadata.as_ref().unwrap().labels.clone().unwrap();
        for (k, v) in spec.selector.as_ref().unwrap() {
            assert_eq!(
                pod_labels.get(k),
                Some(v),
                "{ns}: Service selector does not match the pods"
            );
        }
        let pod = template.spec.unwrap();
        let sidecar = pod
            .containers
            .iter()
            .find(|c| c.name == "meshscrape-proxy")
            .expect("sidecar container");
        assert!(
            sidecar.ports.as_ref().unwrap().iter().any(|p| p.container_port == target),
            "{ns}: targetPort {target} is not the sidecar's"
        );
        // The Istio exclusion covers exactly that port.
        let annotations = template.metadata.unwrap().annotations.unwrap();
        assert_eq!(annotations["traffic.sidecar.istio.io/excludeInboundPorts"], target.to_string());
        // The sidecar serves the monitor's path, reading the ConfigMap it mounts.
        let Object::ConfigMap(cm) = &in_ns("ConfigMap").object else { unreachable!() };
        let volume =
            pod.volumes.as_ref().unwrap().iter().find_map(|v| v.config_map.as_ref()).unwrap();
        assert_eq!(Some(&volume.name), cm.metadata.name.as_ref());
        let proxy = ProxyConfig::from_yaml(
            "cm".as_ref(),
            &cm.data.as_ref().unwrap()["sidecar.yaml"],
            &ProxyOverrides::default(),
        )
        .unwrap();
        assert_eq!(proxy.listen.port() as i32, target);
        assert!(proxy.routes.iter().any(|r| Some(&r.public) == endpoint.path.as_ref()));
        // The sidecar runs locked down.
        let sc = sidecar.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        let limits = sidecar.resources.as_ref().unwrap().limits.clone().unwrap();
        assert_eq!(limits["memory"].0, "15Mi");
        assert_eq!(limits["cpu"].0, "100m");
    }
}

#[test]
fn output_is_byte_identical_between_runs() {
    let config = config_with(|t| t);
    let a = meshscrape_gen::output::stream(&render_config(&config));
    let b = meshscrape_gen::output::stream(&render_config(&config));
    assert_eq!(a, b);
}
