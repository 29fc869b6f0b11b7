//! Tests of meshscrape-gen: rendering, schemas, the scrape chain, options, and the binary.

mod generator {
    pub(crate) mod admission;
    mod chain;
    mod cli;
    mod fuzz;
    mod inject;
    mod options;
    pub(crate) mod support;
}
