//! `meshscrape-verify`: proves, link by link, that Prometheus can scrape an app through the
//! sidecar: offline from manifests, live against an endpoint, from Prometheus's own view, and
//! against a live cluster.

pub mod cli;
pub mod cluster;
pub mod endpoint;
pub mod error;
pub mod exposition;
pub mod fetch;
pub mod manifests;
pub mod prometheus;
pub mod promql;
pub mod protobuf;
pub mod report;
pub mod tls;
