//! Tributary's test harness, shared by every crate's tests; the end-to-end tests that span
//! functions live in this crate's `tests/`.
//!
//! * [`s3`]: a real S3 endpoint: an `s3s` + `s3s-fs` server embedded in the test process on
//!   127.0.0.1 (SigV4 checked), or an external one named by `TEST_S3_ENDPOINT` (SeaweedFS in CI).
//! * [`faults`]: fault injection on the embedded server (error statuses, delays, resets).
//! * [`glue`]: a real Glue API on loopback (`moto_server` from the test venv), optionally behind
//!   a proxy that injects Glue errors, counts calls and enforces UpdateTable's `VersionId`.
//! * [`secrets`]: a real Secrets Manager API on loopback (the same moto).
//! * [`http`]: a raw HTTP/1.1 file server with fault modes, for download tests.
//! * [`runtime`]: a Lambda Runtime API emulator that runs a function's real binary;
//!   [`logs`]: the same with its output captured and Lambda's log-level filter applied.
//! * [`data`]: deterministic test data and digests; [`data::taxi`], the NYC-taxi-like trip
//!   table generator (binary `gen-taxi`).
//! * [`bench_store`]: the benchmark store, a lean S3 server over plain files (binary
//!   `local-s3 --lean`); not used by the tests.
//!
//! Every server binds to 127.0.0.1 only and stops when its handle is dropped.

pub mod bench_store;
pub mod data;
pub mod faults;
pub mod glue;
pub mod http;
pub mod logs;
pub mod runtime;
pub mod s3;
pub mod secrets;

pub use faults::{Action, Calls, FaultPlan, Op};
pub use http::{HttpFault, HttpServer, Resource};
pub use s3::TestS3;

/// Reports that a test did nothing on this endpoint, visibly even when output is captured
/// (the line goes straight to the process's stderr, around the test harness's capture).
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}
