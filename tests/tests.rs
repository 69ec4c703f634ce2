//! One integration-test binary (it links once); each module drives the real
//! `finlit-map` binary.

mod suite;
