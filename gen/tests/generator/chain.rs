//! Rendering for two namespaces: every object validates against its schema and the sidecar runs
//! locked down in each. Whether the chain from the monitor to the sidecar holds is the verifier's
//! question: `e2e/tests/e2e/chain.rs` asks it of the same rendering.

use meshscrape_common::schema::{crd_schema, validate};
use meshscrape_gen::objects::Object;

use super::support::{config_with, crds, render_config, value};

#[test]
fn two_namespaces_render_valid_objects_and_a_locked_down_sidecar_in_each() {
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

    for ns in ["tools", "staging"] {
        let Some(Object::Deployment(dep)) = rendered
            .iter()
            .find(|r| r.namespace == ns && r.kind == "Deployment")
            .map(|r| &r.object)
        else {
            panic!("no Deployment in {ns}")
        };
        let pod = dep.spec.as_ref().unwrap().template.spec.clone().unwrap();
        let sidecar = pod
            .containers
            .iter()
            .find(|c| c.name == "meshscrape-proxy")
            .expect("sidecar container");
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
