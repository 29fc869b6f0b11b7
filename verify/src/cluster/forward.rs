//! Port-forward plumbing: a [`Connector`] opens a stream to a pod's port (kube's port-forward in
//! real use, a local socket in tests), and [`through_forward`] serves it on a local port so that
//! the `endpoint` and `prometheus` checks run unchanged against it, naming the pod, not the port.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::read::api_error;
use crate::report::{Check, Report, Status};

/// A byte stream to a pod's port.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A stream being opened; the error says why it could not be.
pub type Connecting<'a> = Pin<Box<dyn Future<Output = std::io::Result<Box<dyn Io>>> + Send + 'a>>;

/// Opens a stream to `port` of `pod` in `namespace`: the API server's port-forward in real use,
/// a local socket in tests.
pub trait Connector: Send + Sync {
    fn connect<'a>(&'a self, namespace: &'a str, pod: &'a str, port: u16) -> Connecting<'a>;
}

/// `kubectl port-forward`, through the kube client.
pub struct PortForward(pub kube::Client);

impl Connector for PortForward {
    fn connect<'a>(&'a self, namespace: &'a str, pod: &'a str, port: u16) -> Connecting<'a> {
        Box::pin(async move {
            let pods: Api<Pod> = Api::namespaced(self.0.clone(), namespace);
            let mut forwarder = pods.portforward(pod, &[port]).await.map_err(|e| {
                std::io::Error::other(format!(
                    "port-forward to pod/{namespace}/{pod}:{port}: {}",
                    api_error(&e)
                ))
            })?;
            let stream = forwarder
                .take_stream(port)
                .ok_or_else(|| std::io::Error::other("the port-forward opened no stream"))?;
            // The forwarder ends when the stream is dropped.
            tokio::spawn(async move {
                let _ = forwarder.join().await;
            });
            Ok(Box::new(stream) as Box<dyn Io>)
        })
    }
}

/// Opens a local port whose connections are forwarded to the pod's port, runs `run` with its
/// base URL (`scheme://127.0.0.1:port`: the pod may serve https), and names the pod instead of
/// the local address in the checks it returns.
pub(super) async fn through_forward<F, Fut>(
    connector: Arc<dyn Connector>,
    ns: &str,
    pod: &str,
    port: u16,
    target: &str,
    scheme: &str,
    run: F,
) -> Report
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Report>,
{
    let errors = Arc::new(Mutex::new(None::<String>));
    let (addr, task) =
        match bridge(connector, ns.to_string(), pod.to_string(), port, errors.clone()).await {
            Ok(b) => b,
            Err(e) => {
                let mut r = Report::default();
                r.push(
                    Check::fail(
                        "port-forward",
                        format!("cannot open a local port: {e}"),
                        "free a local port",
                    )
                    .on(target),
                );
                return r;
            }
        };
    let base = format!("{scheme}://{addr}");
    let mut found = run(base.clone()).await;
    task.abort();
    for c in &mut found.checks {
        if let Some(o) = &mut c.object {
            *o = o.replace(&base, target);
        }
        c.message = c.message.replace(&base, target);
    }
    if let Some(e) = errors.lock().ok().and_then(|mut e| e.take()) {
        found.checks.insert(
            0,
            Check::fail(
                "port-forward",
                e,
                "you need create on pods/portforward (kubectl auth can-i create \
                    pods/portforward), and the pod must be running",
            )
            .on(target),
        );
    } else if found.checks.iter().all(|c| c.status != Status::Fail) {
        found.checks.insert(0, Check::pass("port-forward", "open").on(target));
    }
    found
}

/// A local listener whose every connection is a new stream to the pod's port.
async fn bridge(
    connector: Arc<dyn Connector>,
    ns: String,
    pod: String,
    port: u16,
    errors: Arc<Mutex<Option<String>>>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((mut local, _)) = listener.accept().await {
            let (connector, ns, pod, errors) =
                (connector.clone(), ns.clone(), pod.clone(), errors.clone());
            tokio::spawn(async move {
                match connector.connect(&ns, &pod, port).await {
                    Ok(mut remote) => {
                        let _ = tokio::io::copy_bidirectional(&mut local, &mut remote).await;
                    }
                    Err(e) => {
                        if let Ok(mut slot) = errors.lock() {
                            slot.get_or_insert(e.to_string());
                        }
                    }
                }
            });
        }
    });
    Ok((addr, task))
}
