//! Systematic mutations of a config that sets every key, of one that sets only the required ones,
//! and of the workloads `inject` is given: each line dropped, doubled or
//! re-indented, each byte dropped, each value replaced by hostile YAML. Whatever the text:
//! - loading never panics, and a rejection names the file and stays readable;
//! - an accepted config renders, every custom resource validates against its CRD, and the
//!   sidecar accepts the ConfigMap it is given;
//! - `inject` never panics, and injecting its output again changes nothing.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use meshscrape_common::schema::{crd_schema, validate};
use meshscrape_common::{AppConfig, ProxyConfig, ProxyOverrides};
use meshscrape_gen::inject::{Extras, inject};
use meshscrape_gen::objects::Object;
use meshscrape_gen::render;
use meshscrape_gen::templates::Templates;
use serde_json::Value;

use super::support::{config_with, crds, root, value};

const FILE: &str = "fuzz.yaml";

/// Every key the application config has, set to a valid value.
const FULL: &str = "\
name: identity-service
namespaces: [tools, payments]
labels:
  run: identity-app
container:
  name: identity-app
  image: registry.example.com/argonauts/identity-service:1.0.0
  port: 8080
  portName: http
  replicas: 2
  probes:
    readiness: /ready
    liveness: /alive
service:
  name: identity
  port: 80
  labels:
    app: argo-monitoring-service
sidecar:
  image: meshscrape-proxy:0.1.0
  port: 9090
  portName: prometheus
  native: true
  resources:
    requests: {cpu: 50m, memory: 10Mi}
    limits: {cpu: 100m, memory: 15Mi}
  routes:
    - /=/prometheus
    - /prometheus=/prometheus
    - /readiness=/ready
  timeouts: {connect: 1s, requestHead: 5s, upstream: 10s, shutdownGrace: 10s}
  limits: {maxInFlight: 16, maxConnections: 128, maxRequestHeadBytes: 8192}
  logFormat: json
monitor:
  kind: ServiceMonitor
  name: argo-monitor
  namespace: monitoring
  labels:
    prometheus: kube-prometheus
  jobLabel: app
  interval: 30s
  scrapeTimeout: 10s
  honorLabels: true
  path: /prometheus
  scheme: http
  scrapeClass: istio-mtls
  scrapeProtocols: [PrometheusText1.0.0, PrometheusText0.0.4]
  fallbackScrapeProtocol: PrometheusText0.0.4
istio:
  mode: both
networkPolicy:
  enabled: true
  namespaceLabels: {kubernetes.io/metadata.name: monitoring}
  podLabels: {app.kubernetes.io/name: prometheus}
";

/// Only the keys that have no default, so that mutations meet the defaults and the values
/// derived from other keys.
const MINIMAL: &str = "\
name: shop
namespaces: [tools]
labels: {app: shop}
container: {image: shop:1, port: 8080}
monitor: {namespace: monitoring, labels: {release: kube-prometheus-stack}}
";

/// Values that YAML parsers, number conversions and name rules trip on.
const HOSTILE: &[&str] = &[
    "",
    "~",
    "null",
    "-1",
    "0",
    "65536",
    "18446744073709551616",
    "1e999",
    ".nan",
    "0x1F",
    "1_000",
    "true",
    "[]",
    "{}",
    "[a, [b, [c]]]",
    "*missing",
    "&anchor value",
    "!!binary aGVsbG8=",
    "'unterminated",
    "\"\\u0000\"",
    "\"a\\nb\"",
    "|\n  block",
    "10 s",
    "5ms500",
    "99999999999999999h",
    "-5s",
    "UPPER_case",
    "/..",
    "../../etc",
    "http://169.254.169.254/latest",
    "-",
    "? complex",
    "a: b: c",
    "\t",
    "\u{feff}x",
    "é",
];

/// One mutated text and what was done to it.
struct Case {
    what: String,
    text: String,
}

fn cases(valid: &str) -> Vec<Case> {
    let lines: Vec<&str> = valid.lines().collect();
    let join = |ls: Vec<&str>| ls.join("\n") + "\n";
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let mut without = lines.clone();
        without.remove(i);
        out.push(Case { what: format!("line {} dropped", i + 1), text: join(without) });
        let mut doubled = lines.clone();
        doubled.insert(i, line);
        out.push(Case { what: format!("line {} doubled", i + 1), text: join(doubled) });
        for (label, indented) in [
            ("indented", format!("  {line}")),
            ("outdented", line.strip_prefix(' ').unwrap_or(line).to_string()),
        ] {
            let mut moved = lines.clone();
            moved[i] = &indented;
            out.push(Case { what: format!("line {} {label}", i + 1), text: join(moved) });
        }
        // Replace the value: after "key: " on a mapping line, or the item of a list line.
        let value_at = line.find(": ").map(|k| k + 2).or_else(|| line.find("- ").map(|k| k + 2));
        if let Some(at) = value_at {
            for hostile in HOSTILE {
                let mut replaced = lines.clone();
                let new = format!("{}{hostile}", &line[..at]);
                replaced[i] = &new;
                out.push(Case {
                    what: format!("line {} value {hostile:?}", i + 1),
                    text: join(replaced),
                });
            }
        }
    }
    // A value thousands of characters long, on every line that has one.
    let long = "a".repeat(5000);
    for (i, line) in lines.iter().enumerate() {
        if let Some(at) = line.find(": ") {
            let mut replaced = lines.clone();
            let new = format!("{}{long}", &line[..at + 2]);
            replaced[i] = &new;
            out.push(Case {
                what: format!("line {} value of 5000 characters", i + 1),
                text: join(replaced),
            });
        }
    }
    for (at, _) in valid.char_indices() {
        let mut text = valid.to_string();
        text.remove(at);
        out.push(Case { what: format!("byte {at} dropped"), text });
    }
    out
}

/// Why an error is not what a user should read: every line must name the file (one-problem
/// errors are one line; lists have a count line, then one line per problem) and stay short.
fn unreadable(err: &meshscrape_common::ConfigError) -> Option<String> {
    let message = err.to_string();
    let lines: Vec<&str> = message.lines().collect();
    let named = match lines.as_slice() {
        [one] => one.starts_with(FILE),
        [_, problems @ ..] => problems.iter().all(|l| l.trim_start().starts_with(FILE)),
        [] => false,
    };
    (!named || lines.iter().any(|l| l.len() > 400)).then(|| {
        format!("the error does not name {FILE} on every line, or is unreadable: {message}")
    })
}

/// Failures of the whole run, reported at once (all of them with `MESHSCRAPE_FUZZ_ALL=1`).
fn report(failures: &[String], cases: usize) {
    if std::env::var_os("MESHSCRAPE_FUZZ_ALL").is_some() {
        for f in failures {
            eprintln!("{}", f.split("\n--- text ---").next().unwrap_or_default());
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed; the first:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n\n")
    );
}

#[test]
fn mangled_sidecar_configs_are_rejected_with_the_file_named_or_round_trip_unchanged() {
    let valid = "\
listen: 0.0.0.0:9090
upstream: http://127.0.0.1:8080
routes: [/prometheus=/prometheus, /readiness=/ready]
timeouts: {connect: 1s, requestHead: 5s, upstream: 10s, shutdownGrace: 10s}
limits: {maxInFlight: 32, maxConnections: 256, maxRequestHeadBytes: 8192}
logFormat: json
";
    let path = Path::new(FILE);
    let none = ProxyOverrides::default();
    let cases = cases(valid);
    let mut failures = Vec::new();
    let (mut accepted, mut rejected) = (0, 0);
    for case in &cases {
        let fail = |why: String| format!("{}: {why}\n--- text ---\n{}", case.what, case.text);
        match catch_unwind(AssertUnwindSafe(|| ProxyConfig::from_yaml(path, &case.text, &none))) {
            Err(_) => failures.push(fail("loading panicked".into())),
            Ok(Err(err)) => {
                rejected += 1;
                failures.extend(unreadable(&err).map(fail));
            }
            Ok(Ok(config)) => {
                accepted += 1;
                // What the generator writes into the ConfigMap must read back as the same config.
                let yaml = config.to_yaml();
                match ProxyConfig::from_yaml(path, &yaml, &none) {
                    Ok(again) if again.to_yaml() == yaml => {}
                    Ok(again) => failures.push(fail(format!(
                        "to_yaml is not stable:\n{yaml}\nthen\n{}",
                        again.to_yaml()
                    ))),
                    Err(err) => {
                        failures.push(fail(format!("its own to_yaml does not load: {err}\n{yaml}")))
                    }
                }
            }
        }
    }
    report(&failures, cases.len());
    eprintln!("{} cases: {accepted} accepted, {rejected} rejected", cases.len());
    assert!(
        accepted > cases.len() / 10 && rejected > cases.len() / 10,
        "accepted {accepted}, rejected {rejected} of {}",
        cases.len()
    );
}

#[test]
fn mangled_configs_are_rejected_with_the_file_named_or_render_objects_that_all_validate() {
    let templates = Templates::load(None).unwrap();
    let crds = crds();
    let path = Path::new(FILE);
    let cases: Vec<Case> = cases(FULL).into_iter().chain(cases(MINIMAL)).collect();
    let mut failures = Vec::new();
    let (mut accepted, mut rejected) = (0, 0);
    for case in &cases {
        let fail = |why: String| format!("{}: {why}\n--- text ---\n{}", case.what, case.text);
        let Ok(loaded) = catch_unwind(AssertUnwindSafe(|| AppConfig::from_yaml(path, &case.text)))
        else {
            failures.push(fail("loading panicked".into()));
            continue;
        };
        let config = match loaded {
            Err(err) => {
                rejected += 1;
                failures.extend(unreadable(&err).map(fail));
                continue;
            }
            Ok(config) => config,
        };
        accepted += 1;
        let rendered = match render(&config, &templates) {
            Ok(r) => r,
            Err(err) => {
                failures.push(fail(format!("accepted, but rendering failed: {err}")));
                continue;
            }
        };
        for r in &rendered {
            let v = value(r);
            let api = v["apiVersion"].as_str().unwrap_or_default();
            if let Some(version) = api
                .strip_prefix("monitoring.coreos.com/")
                .or(api.strip_prefix("security.istio.io/"))
                && let Some(schema) = crd_schema(&crds, &r.kind, version)
            {
                let errors = validate(schema, &v);
                if !errors.is_empty() {
                    failures
                        .push(fail(format!("{} {} breaks its CRD: {errors:?}", r.kind, r.name)));
                }
            }
            if let Object::ConfigMap(cm) = &r.object {
                let sidecar = cm.data.as_ref().and_then(|d| d.get("sidecar.yaml"));
                match sidecar
                    .map(|y| ProxyConfig::from_yaml("cm".as_ref(), y, &ProxyOverrides::default()))
                {
                    Some(Ok(_)) => {}
                    Some(Err(err)) => {
                        failures.push(fail(format!("the sidecar rejects its own ConfigMap: {err}")))
                    }
                    None => failures.push(fail("the ConfigMap has no sidecar.yaml".into())),
                }
            }
        }
    }
    report(&failures, cases.len());
    eprintln!("{} cases: {accepted} accepted, {rejected} rejected", cases.len());
    // Both outcomes must be common, or the mutations are not exercising the validation.
    assert!(
        accepted > cases.len() / 10 && rejected > cases.len() / 10,
        "accepted {accepted}, rejected {rejected} of {}",
        cases.len()
    );
}

#[test]
fn mangled_workloads_inject_idempotently_or_fail_in_one_line() {
    let valid = std::fs::read_to_string(root().join("gen/tests/fixtures/workloads.yaml")).unwrap();
    let config = config_with(|t| t);
    let templates = Templates::load(None).unwrap();
    let extras = Extras { service_port: true, monitor: true };
    let mut cases = cases(&valid);
    cases.extend(subtree_cases(&valid));
    let mut failures = Vec::new();
    let (mut injected, mut refused, mut not_yaml) = (0, 0, 0);
    for case in &cases {
        let fail = |why: String| format!("{}: {why}\n--- text ---\n{}", case.what, case.text);
        // What the CLI reads; text that is not YAML never reaches inject (`Input` error).
        let Ok(docs) = serde_saphyr::from_multiple::<Value>(&case.text) else {
            not_yaml += 1;
            continue;
        };
        let Ok(once) = catch_unwind(AssertUnwindSafe(|| inject(&config, &templates, docs, extras)))
        else {
            failures.push(fail("inject panicked".into()));
            continue;
        };
        match once {
            Err(err) => {
                refused += 1;
                if err.to_string().contains('\n') {
                    failures.push(fail(format!("the error is not one line: {err}")));
                }
            }
            Ok(once) => {
                injected += 1;
                match inject(&config, &templates, once.documents.clone(), extras) {
                    Ok(twice) if twice.documents == once.documents => {}
                    Ok(_) => failures.push(fail("injecting the output again changed it".into())),
                    Err(err) => {
                        failures.push(fail(format!("injecting the output again failed: {err}")))
                    }
                }
            }
        }
    }
    report(&failures, cases.len());
    eprintln!("{} cases: {injected} injected, {refused} refused, {not_yaml} not YAML", cases.len());
    assert!(injected > cases.len() / 4, "injected {injected} of {}", cases.len());
}

/// Every subtree of the parsed workloads (each mapping, list and scalar, the documents
/// themselves included) replaced in turn by a value of every other shape.
fn subtree_cases(valid: &str) -> Vec<Case> {
    fn paths(v: &Value, at: String, out: &mut Vec<String>) {
        out.push(at.clone());
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    paths(child, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    paths(child, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let docs: Vec<Value> = serde_saphyr::from_multiple(valid).unwrap();
    let shapes = [
        Value::Null,
        serde_json::json!(5),
        serde_json::json!("x"),
        serde_json::json!([1, "a"]),
        serde_json::json!({"k": [null]}),
        serde_json::json!(true),
    ];
    let mut out = Vec::new();
    for (d, doc) in docs.iter().enumerate() {
        let mut at = Vec::new();
        paths(doc, String::new(), &mut at);
        for path in at {
            for shape in &shapes {
                let mut changed = docs.clone();
                match changed[d].pointer_mut(&path) {
                    Some(slot) => *slot = shape.clone(),
                    None => continue,
                }
                let text = changed
                    .iter()
                    .map(|v| serde_saphyr::to_string(v).unwrap())
                    .collect::<Vec<_>>()
                    .join("---\n");
                out.push(Case {
                    what: format!("document {d} at `{path}` replaced by {shape}"),
                    text,
                });
            }
        }
    }
    out
}
