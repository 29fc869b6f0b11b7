use super::*;
use crate::error::Problem;
use std::path::PathBuf;

fn from_yaml(text: &str) -> Result<ProxyConfig, ConfigError> {
    ProxyConfig::from_yaml(Path::new("sidecar.yaml"), text, &ProxyOverrides::default())
}

fn problems(err: ConfigError) -> Vec<Problem> {
    match err {
        ConfigError::Invalid { problems } => problems,
        other => panic!("expected invalid values, got: {other}"),
    }
}

fn at(line: u64) -> Origin {
    Origin::File { path: PathBuf::from("sidecar.yaml"), line, column: 0 }
}

fn line_of(p: &Problem) -> u64 {
    match &p.origin {
        Origin::File { line, .. } => *line,
        other => panic!("expected a file origin, got {other}"),
    }
}

#[test]
fn defaults_are_the_seed_setup() {
    let c = ProxyConfig::default();
    assert_eq!(c.listen, "0.0.0.0:9090".parse().unwrap());
    assert_eq!(c.upstream, "127.0.0.1:8080".parse().unwrap());
    let pairs: Vec<_> =
        c.routes.iter().map(|r| (r.public.as_str(), r.targets[0].path.as_str())).collect();
    assert_eq!(
        pairs,
        [
            ("/", "/prometheus"),
            ("/prometheus", "/prometheus"),
            ("/readiness", "/ready"),
            ("/liveness", "/alive")
        ]
    );
    assert!(c.routes.iter().all(|r| r.targets.len() == 1 && r.targets[0].addr == c.upstream));
    assert_eq!(c.log_format, LogFormat::Text);
}

#[test]
fn reads_every_key_from_yaml() {
    let c = from_yaml(
        "listen: 127.0.0.1:19090\nupstream: http://localhost:9100\nroutes:\n  - /metrics=/metrics\n  - /other=http://127.0.0.2:7000/stats\n\
         timeouts:\n  connect: 250ms\n  requestHead: 2s\n  upstream: 8s\n  shutdownGrace: 3s\n\
         limits:\n  maxInFlight: 4\n  maxConnections: 50\n  maxRequestHeadBytes: 4096\nlogFormat: json\n",
    )
    .unwrap();
    assert_eq!(c.listen, "127.0.0.1:19090".parse().unwrap());
    assert_eq!(
        c.upstream,
        "127.0.0.1:9100".parse().unwrap(),
        "localhost resolves to 127.0.0.1 at load time"
    );
    assert_eq!(c.routes[0].targets, [Target { addr: c.upstream, path: "/metrics".into() }]);
    assert_eq!(
        c.routes[1].targets,
        [Target { addr: "127.0.0.2:7000".parse().unwrap(), path: "/stats".into() }]
    );
    assert_eq!(c.timeouts.connect, Duration::from_millis(250));
    assert_eq!(c.timeouts.request_head, Duration::from_secs(2));
    assert_eq!(c.timeouts.upstream, Duration::from_secs(8));
    assert_eq!(c.timeouts.shutdown_grace, Duration::from_secs(3));
    assert_eq!(
        c.limits,
        Limits {
            max_in_flight: 4,
            max_connections: 50,
            max_request_head_bytes: 4096,
            max_part_bytes: defaults::MAX_PART_BYTES
        }
    );
    assert_eq!(c.log_format, LogFormat::Json);
}

#[test]
fn flags_override_the_file() {
    let o = ProxyOverrides {
        listen: Some("127.0.0.1:1".into()),
        routes: vec!["/m=/metrics".into()],
        max_in_flight: Some(2),
        ..Default::default()
    };
    let c = ProxyConfig::from_yaml(
        Path::new("f.yaml"),
        "listen: 0.0.0.0:9999\nroutes: [/a=/b, /c=/d]\nlimits: {maxInFlight: 9}\n",
        &o,
    )
    .unwrap();
    assert_eq!(c.listen.port(), 1);
    assert_eq!(c.routes.len(), 1, "flag routes replace the file's");
    assert_eq!(c.routes[0].public, "/m");
    assert_eq!(c.limits.max_in_flight, 2);
}

#[test]
fn to_yaml_reads_back_to_the_same_config() {
    let original = ProxyConfig::from_yaml(
        Path::new("x.yaml"),
        "upstream: http://127.0.0.1:8081\nroutes: [/prometheus=/prometheus, \
            /x=http://127.0.0.1:9000/y]\ntimeouts: {upstream: 1500ms}\n",
        &ProxyOverrides::default(),
    )
    .unwrap();
    let text = original.to_yaml();
    assert_eq!(from_yaml(&text).unwrap(), original, "{text}");
    assert!(text.contains("- /prometheus=/prometheus"), "{text}");
}

#[test]
fn rejects_non_loopback_upstream_naming_the_line() {
    let p =
        problems(from_yaml("listen: 0.0.0.0:9090\nupstream: http://10.0.0.8:8080\n").unwrap_err());
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].field, "upstream");
    assert_eq!(line_of(&p[0]), 2);
    assert!(p[0].message.contains("not on loopback"), "{}", p[0].message);
    assert!(p[0].message.contains("127.0.0.1"), "says what is valid: {}", p[0].message);
}

#[test]
fn rejects_https_names_and_paths_in_upstream() {
    for (upstream, needle) in [
        ("https://127.0.0.1:8443", "use http://"),
        ("http://app.svc:8080", "host `app.svc`"),
        ("http://127.0.0.1:8080/base", "has a path"),
        ("http://user:pw@127.0.0.1:8080", "user information"),
        ("http://127.0.0.1:99999", "port"),
        ("127.0.0.1:8080", "not an http:// URL"),
    ] {
        let p = problems(from_yaml(&format!("upstream: {upstream}\n")).unwrap_err());
        assert!(p[0].message.contains(needle), "{upstream}: {}", p[0].message);
    }
}

#[test]
fn rejects_route_targets_off_loopback() {
    let p = problems(from_yaml("routes:\n  - /m=http://192.168.1.1/metrics\n").unwrap_err());
    assert_eq!(p[0].field, "routes[0]");
    assert!(p[0].message.contains("loopback"));
}

#[test]
fn rejects_reserved_relative_and_duplicate_public_paths_all_at_once() {
    let p = problems(
        from_yaml("routes:\n  - /-/metrics=/metrics\n  - metrics=/metrics\n  - /a=/x\n  - /a=/y\n  - /b/../c=/x\n  - /q?x=1=/x\n").unwrap_err(),
    );
    let fields: Vec<_> = p.iter().map(|p| (p.field.as_str(), line_of(p))).collect();
    assert_eq!(
        fields,
        [("routes[0]", 2), ("routes[1]", 3), ("routes[3]", 5), ("routes[4]", 6), ("routes[5]", 7)]
    );
    assert!(p[0].message.contains("/-/"));
    assert!(p[1].message.contains("must start with /"));
    assert!(p[2].message.contains("already routed (at sidecar.yaml:4:"), "{}", p[2].message);
    assert!(p[3].message.contains(".."));
    assert!(p[4].message.contains("query"));
}

#[test]
fn rejects_bad_escapes_and_control_characters_in_paths() {
    assert!(check_path("/a%zz").unwrap_err().contains("two hex digits"));
    assert!(check_path("/a b").unwrap_err().contains("cannot hold"));
    assert!(check_path("/a\u{0}").is_err());
    assert!(check_path("/a%2Fb").is_ok());
}

#[test]
fn reports_unknown_keys_with_line_and_column() {
    let err = from_yaml("listen: 0.0.0.0:9090\nupstrem: http://127.0.0.1:8080\n").unwrap_err();
    let ConfigError::Syntax { line, message, .. } = &err else { panic!("{err}") };
    assert_eq!(*line, 2);
    assert!(message.contains("upstrem"), "{message}");
    let shown = err.to_string();
    assert!(shown.starts_with("sidecar.yaml:2:"), "{shown}");
}

#[test]
fn reports_wrong_types_and_syntax_errors_with_the_line() {
    let err = from_yaml("limits:\n  maxInFlight: lots\n").unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { line: 2, .. }), "{err}");
    let err = from_yaml("routes: [/a=/b\nlisten: x\n").unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
}

#[test]
fn rejects_limits_and_timeouts_out_of_range() {
    let p = problems(
        from_yaml(
            "timeouts:\n  upstream: 0s\n  connect: 30\nlimits:\n  maxInFlight: 0\n  \
            maxRequestHeadBytes: 10\nlogFormat: xml\n",
        )
        .unwrap_err(),
    );
    let fields: Vec<_> = p.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "timeouts.connect",
            "timeouts.upstream",
            "limits.maxInFlight",
            "limits.maxRequestHeadBytes",
            "logFormat"
        ]
    );
    assert!(p[0].message.contains("no unit"));
    assert!(p[4].message.contains("text or json"));
}

#[test]
fn flag_errors_name_the_flag() {
    let o = ProxyOverrides {
        listen: Some("nine-oh-nine-oh".into()),
        routes: vec!["/x".into()],
        ..Default::default()
    };
    let p = problems(ProxyConfig::load(None, &o).unwrap_err());
    assert_eq!(p[0].origin, Origin::Flag("--listen"));
    assert_eq!(p[1].origin, Origin::Flag("--route"));
    assert_eq!(p[1].field, "--route #1");
    let shown = ConfigError::Invalid { problems: p }.to_string();
    assert!(
        shown.contains("flag --listen: listen: `nine-oh-nine-oh` is not an address"),
        "{shown}"
    );
}

#[test]
fn empty_route_list_is_an_error_not_the_default() {
    let p = problems(from_yaml("routes: []\n").unwrap_err());
    assert_eq!(p[0].origin, at(1).with_column_of(&p[0].origin));
    assert!(p[0].message.contains("empty"));
}

#[test]
fn missing_file_names_the_path() {
    let err =
        ProxyConfig::load(Some(Path::new("/nonexistent/sidecar.yaml")), &ProxyOverrides::default())
            .unwrap_err();
    assert!(err.to_string().starts_with("cannot read /nonexistent/sidecar.yaml"), "{err}");
}

impl Origin {
    /// Test helper: this origin with `other`'s column, to compare lines only.
    fn with_column_of(self, other: &Origin) -> Origin {
        match (self, other) {
            (Origin::File { path, line, .. }, Origin::File { column, .. }) => {
                Origin::File { path, line, column: *column }
            }
            (s, _) => s,
        }
    }
}

#[test]
fn forward_headers_are_header_names_the_sidecar_does_not_set_itself() {
    let text = "forwardHeaders: [X-Tenant, x-tenant, Host, \"bad name\", Accept]\n";
    let err =
        ProxyConfig::from_yaml(Path::new("s.yaml"), text, &ProxyOverrides::default()).unwrap_err();
    let ConfigError::Invalid { problems } = err else { panic!("{err}") };
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["forwardHeaders[2]", "forwardHeaders[3]", "forwardHeaders[4]"]);
    assert!(problems[0].message.contains("the sidecar sets itself"));
    assert!(problems[1].message.contains("not an HTTP header name"));
    assert!(problems[2].message.contains("always forwarded"));
    let ok = ProxyConfig::from_yaml(
        Path::new("s.yaml"),
        "forwardHeaders: [X-Tenant, x-tenant]\n",
        &ProxyOverrides::default(),
    )
    .unwrap();
    assert_eq!(ok.forward_headers, ["x-tenant"]);
    // And it reads back from the YAML the generator writes.
    let back =
        ProxyConfig::from_yaml(Path::new("s.yaml"), &ok.to_yaml(), &ProxyOverrides::default())
            .unwrap();
    assert_eq!(back, ok);
}

#[test]
fn an_ipv6_host_must_be_followed_by_a_colon_and_the_port_or_nothing() {
    let e = problems(from_yaml("upstream: http://[::1]8080\n").unwrap_err());
    assert!(e[0].message.contains("write the port after a colon"), "{e:?}");
    let ok = from_yaml("upstream: http://[::1]:8080\n").unwrap();
    assert_eq!(ok.upstream.to_string(), "[::1]:8080");
}

#[test]
fn a_route_merges_several_targets_written_as_a_list_or_with_bars() {
    let listed = from_yaml(
        "routes:\n  - path: /metrics\n    targets: [/metrics, 'http://127.0.0.1:9100/metrics']\n  - /solo=/x\n",
    )
    .unwrap();
    let barred = ProxyConfig::load(
        None,
        &ProxyOverrides {
            routes: vec![
                "/metrics=/metrics|http://localhost:9100/metrics".into(),
                "/solo=/x".into(),
            ],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(listed.routes, barred.routes);
    let m = &listed.routes[0];
    assert!(m.is_merged() && !listed.routes[1].is_merged());
    assert_eq!(
        m.targets.iter().map(Target::url).collect::<Vec<_>>(),
        ["http://127.0.0.1:8080/metrics", "http://127.0.0.1:9100/metrics"]
    );
    assert_eq!(m.to_flag(listed.upstream), "/metrics=/metrics|http://127.0.0.1:9100/metrics");
    // The ConfigMap keeps the list form, and reads back the same.
    let yaml = listed.to_yaml();
    assert!(yaml.contains("targets:"), "{yaml}");
    assert_eq!(from_yaml(&yaml).unwrap(), listed);
}

#[test]
fn merged_routes_are_checked_target_by_target() {
    let p = problems(
        from_yaml(
            "limits: {maxInFlight: 2}\nroutes:\n  - /a=/x|/x\n  - /b=/x||/y\n  - /c=/x|http://10.0.0.1/m\n  \
             - /d=/1|/2|/3\n  - path: /e\n    targets: [/x, 'http://127.0.0.1:1/a b']\n",
        )
        .unwrap_err(),
    );
    let fields: Vec<_> = p.iter().map(|p| (p.field.as_str(), line_of(p))).collect();
    assert_eq!(
        fields,
        [("routes[0]", 3), ("routes[1]", 4), ("routes[2]", 5), ("routes[3]", 6), ("routes[4]", 7)]
    );
    assert!(p[0].message.contains("twice"), "{}", p[0].message);
    assert!(p[1].message.contains("empty target"), "{}", p[1].message);
    assert!(p[2].message.contains("loopback"), "{}", p[2].message);
    assert!(p[3].message.contains("limits.maxInFlight is 2"), "{}", p[3].message);
    assert!(p[4].message.contains("cannot hold"), "{}", p[4].message);
    let nine = (1..=9).map(|i| format!("/{i}")).collect::<Vec<_>>().join("|");
    let p = problems(from_yaml(&format!("routes: ['/m={nine}']\n")).unwrap_err());
    assert!(p[0].message.contains("at most 8"), "{}", p[0].message);
    let err = from_yaml("routes:\n  - path: /m\n    target: [/x]\n").unwrap_err();
    assert!(err.to_string().contains("target"), "{err}");
}

#[test]
fn auth_and_tls_read_back_from_yaml_and_flags_win() {
    let c = from_yaml(
        "auth:\n  bearerTokenFile: /run/token\n  allowedClients: [10.0.0.0/8, 192.168.1.5]\n\
         tls:\n  certFile: /tls/tls.crt\n  keyFile: /tls/tls.key\n  clientCAFile: /tls/ca.crt\n",
    )
    .unwrap();
    assert_eq!(c.auth.bearer_token_file.as_deref(), Some(Path::new("/run/token")));
    assert_eq!(
        c.auth.allowed_clients.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["10.0.0.0/8", "192.168.1.5/32"]
    );
    let tls = c.tls.clone().unwrap();
    assert_eq!(tls.client_ca_file.as_deref(), Some(Path::new("/tls/ca.crt")));
    assert_eq!(from_yaml(&c.to_yaml()).unwrap(), c, "{}", c.to_yaml());
    assert_eq!(ProxyConfig::default().auth, Auth::default(), "off by default");
    assert!(ProxyConfig::default().tls.is_none());

    let o = ProxyOverrides { allowed_clients: vec!["fd00::/8".into()], ..Default::default() };
    let c = ProxyConfig::from_yaml(
        Path::new("sidecar.yaml"),
        "auth:\n  allowedClients: [10.0.0.0/8]\n",
        &o,
    )
    .unwrap();
    assert_eq!(c.auth.allowed_clients[0].to_string(), "fd00::/8");
}

#[test]
fn incomplete_tls_bad_blocks_and_a_leaked_token_are_errors() {
    let p = problems(
        from_yaml(
            "auth:\n  bearerTokenFile: /run/token\n  allowedClients: [10.0.0.1/8]\n\
             tls:\n  certFile: /tls/tls.crt\nforwardHeaders: [Authorization]\n",
        )
        .unwrap_err(),
    );
    let fields: Vec<_> = p.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["auth.allowedClients[0]", "tls.keyFile", "forwardHeaders"], "{p:?}");
    assert!(p[0].message.contains("write 10.0.0.0/8"));
    assert_eq!(line_of(&p[0]), 3);
    assert!(p[2].message.contains("hand the token to the app"));
    let p = problems(from_yaml("tls:\n  clientCAFile: /ca.crt\n").unwrap_err());
    assert!(p[0].message.contains("needs TLS"), "{p:?}");
}
