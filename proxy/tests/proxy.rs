//! Process- and socket-level tests of the sidecar: real TCP on loopback port 0, scripted upstreams,
//! raw client bytes. One test binary with topic modules.

mod proxy {
    mod access;
    mod forwarding;
    mod fuzz;
    mod hostile;
    mod lifecycle;
    mod merge;
    mod reload;
    pub(crate) mod support;
}
