//! `meshscrape-verify`: proves, link by link, that Prometheus can scrape an app through the
//! sidecar: offline from manifests, live against an endpoint, and from Prometheus's own view.

pub mod manifests;
pub mod report;
