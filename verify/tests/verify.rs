//! Tests of meshscrape-verify's live checks and its binary: `endpoint` and `prometheus` against
//! misbehaving loopback servers, `cluster` against a mock and a fake API server, and the CLI.

mod verify {
    mod cli;
    mod cluster;
    mod differential;
    mod fake_cluster;
    mod fuzz;
    mod live;
}
