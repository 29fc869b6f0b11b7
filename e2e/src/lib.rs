//! End-to-end tests of meshscrape live in `tests/`. Tier 2 (`tests/prometheus.rs`): the sidecar
//! configured from the ConfigMap that `meshscrape-gen` renders, a demo app, and a real
//! Prometheus process scraping through the sidecar, checked with `meshscrape-verify`.
//! Tier 3 (containers, testcontainers) is not written yet.
