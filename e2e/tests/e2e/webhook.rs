//! The admission webhook as it runs in a cluster: its image (FROM scratch, non-root, read-only
//! root) started with exactly what `meshscrape-gen webhook` renders (the Deployment's args, the
//! ConfigMap and the Secret mounted as the kubelet projects them), and called over TLS as the
//! API server calls it: trusting the MutatingWebhookConfiguration's caBundle, expecting the
//! Service's name. Then SIGTERM: a clean drain.

use std::sync::Arc;
use std::time::{Duration, Instant};

use meshscrape_common::AppConfig;
use meshscrape_e2e::docker;
use meshscrape_e2e::pod::{Scratch, image, network_name};
use meshscrape_gen::templates::Templates;
use meshscrape_gen::webhook::{self, Options};
use serde_json::{Value, json};
use testcontainers::ImageExt as _;
use testcontainers::core::{AccessMode, Mount};
use testcontainers::runners::AsyncRunner as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const SERVICE_NAME: &str = "meshscrape-webhook.meshscrape-system.svc";

/// One HTTPS exchange as the API server makes it; (status, body).
async fn call(
    addr: &str,
    ca: &[u8],
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, String), String> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca) {
        roots.add(c.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(SERVICE_NAME).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {SERVICE_NAME}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
    tls.write_all(body).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").ok_or(format!("no answer: {text:?}"))?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("no status")?;
    Ok((status, body.to_string()))
}

#[tokio::test]
async fn the_webhook_image_answers_the_api_servers_call_over_tls_and_drains() {
    if docker::images_or_skip(env!("CARGO_BIN_EXE_demo-app")).is_none() {
        return;
    }
    let image_tag = docker::webhook_image().unwrap_or_else(|e| panic!("{e}"));
    let root = meshscrape_e2e::root();
    let config_path = root.join("examples/identity-service.yaml");
    let config_text = std::fs::read_to_string(&config_path).unwrap();
    // The file the webhook will read must be a valid application config.
    AppConfig::from_yaml(&config_path, &config_text).unwrap();
    let options = Options {
        namespace: "meshscrape-system".into(),
        name: "meshscrape-webhook".into(),
        image: image_tag.clone(),
        replicas: 1,
        config_text,
        valid_days: 30,
        cert_manager: None,
        failure_policy: "Ignore".into(),
    };
    let cert = webhook::certificate(&options).unwrap();
    let rendered = webhook::render(&Templates::load(None).unwrap(), &options, Some(&cert)).unwrap();
    let doc = |kind: &str| -> Value {
        let r = rendered.iter().find(|r| r.kind == kind).unwrap();
        serde_saphyr_free(&r.text)
    };
    let deployment = doc("Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let hook = doc("MutatingWebhookConfiguration");
    let ca_bundle: k8s_openapi::ByteString =
        serde_json::from_value(hook["webhooks"][0]["clientConfig"]["caBundle"].clone()).unwrap();

    // The ConfigMap and the Secret, as the kubelet projects them into the container.
    let scratch = Scratch::new("webhook");
    let cm = doc("ConfigMap");
    scratch.file("config/app.yaml", cm["data"]["app.yaml"].as_str().unwrap());
    let secret = doc("Secret");
    for key in ["tls.crt", "tls.key", "ca.crt", "ca.key"] {
        scratch.file(&format!("tls/{key}"), secret["stringData"][key].as_str().unwrap());
    }
    let sc = &container["securityContext"];
    let started = image(&image_tag)
        .with_cmd(args)
        .with_user(format!("{}:{}", sc["runAsUser"], sc["runAsGroup"]))
        .with_readonly_rootfs(sc["readOnlyRootFilesystem"] == true)
        .with_env_var("POD_NAMESPACE", "meshscrape-system")
        .with_network(network_name("webhook"))
        .with_mount(
            Mount::bind_mount(scratch.dir("config"), "/etc/meshscrape-webhook/config")
                .with_access_mode(AccessMode::ReadOnly),
        )
        .with_mount(
            Mount::bind_mount(scratch.dir("tls"), "/etc/meshscrape-webhook/tls")
                .with_access_mode(AccessMode::ReadOnly),
        )
        .start()
        .await
        .expect("start the webhook container");
    let ip = started.get_bridge_ip_address().await.unwrap();
    let addr = format!("{ip}:8443");

    // Ready, over TLS that trusts only the rendered caBundle.
    let begun = Instant::now();
    loop {
        match call(&addr, &ca_bundle.0, "GET", "/readyz", b"").await {
            Ok((200, _)) => break,
            other if begun.elapsed() > Duration::from_secs(30) => panic!("never ready: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }

    // The API server's call: a Deployment asking for the sidecar.
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "e2e-1", "operation": "CREATE", "namespace": "tools",
            "object": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shop"},
                "spec": {"selector": {"matchLabels": {"app": "shop"}}, "template": {
                    "metadata": {"labels": {"app": "shop"}, "annotations": {"meshscrape.io/inject": "true"}},
                    "spec": {"containers": [{"name": "shop", "image": "shop:1"}]}}}}}});
    let (status, body) =
        call(&addr, &ca_bundle.0, "POST", "/inject", &serde_json::to_vec(&review).unwrap())
            .await
            .unwrap();
    assert_eq!(status, 200, "{body}");
    let response: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(response["response"]["uid"], "e2e-1");
    let patch: k8s_openapi::ByteString =
        serde_json::from_value(response["response"]["patch"].clone()).unwrap();
    let ops: Vec<Value> = serde_json::from_slice(&patch.0).unwrap();
    assert!(
        ops.iter().any(|op| op["path"] == "/spec/template/spec/containers"
            && op["value"].as_array().unwrap().iter().any(|c| c["name"] == "meshscrape-proxy")),
        "{ops:?}"
    );

    // SIGTERM: drained, exit 0.
    started.stop().await.expect("stop the webhook");
    assert_eq!(docker::inspect(started.id(), "{{.State.ExitCode}}"), "0");
}

/// A rendered YAML document as JSON (through gen's own reader).
fn serde_saphyr_free(text: &str) -> Value {
    let text = text.to_string();
    meshscrape_gen::inject::read_inputs(&["-".into()], move || Ok(text)).unwrap().remove(0)
}
