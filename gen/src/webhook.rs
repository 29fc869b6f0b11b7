//! `meshscrape-gen webhook`: everything the admission webhook needs, rendered from the templates
//! like the rest: its ServiceAccount (no Role: it calls no API), the ConfigMap with the
//! application config it injects with, the Secret with its serving certificate, its Deployment
//! and Service, and the MutatingWebhookConfiguration whose `caBundle` trusts that certificate.
//!
//! The certificate is made here by default: a CA of its own and a serving certificate for the
//! Service's names, valid `valid_days` from now. Rendering again makes new ones; applied, the
//! kubelet updates the Secret and the webhook rereads it without a restart, and the caBundle
//! changes with it. The Secret carries its expiry (`meshscrape.io/not-after`) to schedule that
//! by. With cert-manager, a Certificate (and a self-signed Issuer, unless one is named) is
//! rendered instead: cert-manager issues and renews the Secret, and its cainjector keeps the
//! caBundle in step.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::json;

use crate::GenError;
use crate::objects;
use crate::render::Rendered;
use crate::templates::Templates;

/// What the webhook is deployed as.
#[derive(Clone, Debug)]
pub struct Options {
    pub namespace: String,
    pub name: String,
    pub image: String,
    pub replicas: u32,
    /// The application config file's text, as the webhook will read it.
    pub config_text: String,
    pub valid_days: u32,
    /// `Ignore` (fail open) or `Fail`.
    pub failure_policy: String,
    /// Let cert-manager issue and renew the certificate instead of making one here.
    pub cert_manager: Option<CertManager>,
}

/// The cert-manager issuer of the webhook's certificate.
#[derive(Clone, Debug)]
pub struct CertManager {
    /// `Issuer` or `ClusterIssuer`, and its name; `None`: a self-signed Issuer rendered here.
    pub issuer: Option<(String, String)>,
}

/// The templates for `o`, in the order their objects can be applied.
fn templates_for(o: &Options) -> Vec<&'static str> {
    let mut names = vec!["webhook-serviceaccount.yaml.j2", "webhook-configmap.yaml.j2"];
    match &o.cert_manager {
        None => names.push("webhook-secret.yaml.j2"),
        Some(cm) => {
            if cm.issuer.is_none() {
                names.push("webhook-issuer.yaml.j2");
            }
            names.push("webhook-certificate.yaml.j2");
        }
    }
    names.extend([
        "webhook-deployment.yaml.j2",
        "webhook-service.yaml.j2",
        "webhook-mutatingwebhookconfiguration.yaml.j2",
    ]);
    names
}

/// A CA, and a serving certificate it signs for the Service's DNS names; PEM, and the expiry.
pub struct Certificate {
    pub ca: String,
    /// The CA's key: in the Secret, so the webhook renews its serving certificate itself.
    pub ca_key: String,
    pub crt: String,
    pub key: String,
    pub not_after: String,
}

/// Makes the webhook's CA and serving certificate.
pub fn certificate(o: &Options) -> Result<Certificate, GenError> {
    let fail = |e: rcgen::Error| GenError::Input {
        path: "webhook certificate".into(),
        message: e.to_string(),
    };
    let now = time::OffsetDateTime::now_utc();
    let until = now + time::Duration::days(i64::from(o.valid_days));
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.distinguished_name.push(DnType::CommonName, format!("{} CA", o.name));
    // The CA outlives the serving certificates it signs: the webhook renews its own from it, and
    // the caBundle stays valid until the CA expires (ten years, or the certificate's validity).
    ca_params.not_before = now - time::Duration::hours(1);
    ca_params.not_after = now + time::Duration::days(i64::from(o.valid_days.max(3650)));
    let ca_key = KeyPair::generate().map_err(fail)?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(fail)?;
    let names = vec![
        o.name.clone(),
        format!("{}.{}", o.name, o.namespace),
        format!("{}.{}.svc", o.name, o.namespace),
        format!("{}.{}.svc.cluster.local", o.name, o.namespace),
    ];
    let mut params = CertificateParams::new(names).map_err(fail)?;
    params.distinguished_name.push(DnType::CommonName, format!("{}.{}.svc", o.name, o.namespace));
    params.not_before = now - time::Duration::hours(1);
    params.not_after = until;
    let key = KeyPair::generate().map_err(fail)?;
    let cert = params.signed_by(&key, &ca).map_err(fail)?;
    let not_after = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        until.year(),
        u8::from(until.month()),
        until.day(),
        until.hour(),
        until.minute(),
        until.second()
    );
    Ok(Certificate {
        ca: ca.pem(),
        ca_key: ca_key_pem,
        crt: cert.pem(),
        key: key.serialize_pem(),
        not_after,
    })
}

/// Renders and checks every object of the webhook, in the order they can be applied.
pub fn render(
    templates: &Templates,
    o: &Options,
    cert: Option<&Certificate>,
) -> Result<Vec<Rendered>, GenError> {
    let cert_value = cert.map(|c| {
        let ca_bundle = serde_json::to_value(k8s_openapi::ByteString(c.ca.as_bytes().to_vec()))
            .unwrap_or_default();
        json!({"ca": c.ca, "ca_key": c.ca_key, "crt": c.crt, "key": c.key, "ca_bundle": ca_bundle,
            "not_after": c.not_after})
    });
    let cert_manager = o.cert_manager.as_ref().map(|cm| match &cm.issuer {
        Some((kind, name)) => json!({"kind": kind, "issuer": name}),
        None => json!({"kind": "Issuer", "issuer": format!("{}-selfsigned", o.name)}),
    });
    let ctx = minijinja::Value::from(minijinja::value::Serde(json!({
        "webhook": {
            "name": o.name,
            "namespace": o.namespace,
            "image": o.image,
            "replicas": o.replicas,
            "failure_policy": o.failure_policy,
            "config_text": o.config_text,
            "cert": cert_value,
            "cert_manager": cert_manager,
        }
    })));
    let mut out = Vec::new();
    for name in templates_for(o) {
        let text = templates.render(name, &ctx)?;
        let source = templates.source(name);
        let (object, value) = objects::parse(&text).map_err(|message| GenError::Object {
            template: source.clone(),
            kind: "object".into(),
            name: String::new(),
            message,
        })?;
        let field =
            |p: &str| value.pointer(p).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        out.push(Rendered {
            namespace: field("/metadata/namespace"),
            kind: field("/kind"),
            name: field("/metadata/name"),
            source,
            text,
            object,
        });
    }
    Ok(out)
}
