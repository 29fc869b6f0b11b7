//! End-to-end tests: tier 2 (a real Prometheus process scraping through the sidecar in this
//! process) and tier 3 (a pod of containers behind an mTLS gate, Prometheus in a container).

mod e2e {
    mod chain;
    mod containers;
    mod demo;
    mod prometheus;
    mod webhook;
}
