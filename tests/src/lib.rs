//! Tributary's test harness, shared by every crate's tests.
//!
//! * [`s3`]: a real S3 endpoint: an `s3s` + `s3s-fs` server embedded in the test process on
//!   127.0.0.1 (SigV4 checked), or an external one named by `TEST_S3_ENDPOINT` (SeaweedFS in CI).
//! * [`faults`]: fault injection on the embedded server (error statuses, delays, resets).
//! * [`http`]: a raw HTTP/1.1 file server with fault modes, for download tests.
//! * [`data`]: deterministic test data and digests.
//!
//! Every server binds to 127.0.0.1 only and stops when its handle is dropped.

pub mod data;
pub mod faults;
pub mod http;
pub mod lean_s3;
pub mod runtime;
pub mod s3;
pub mod taxi;

pub use faults::{Action, Calls, FaultPlan, Op};
pub use http::{HttpFault, HttpServer, Resource};
pub use s3::TestS3;

/// Reports that a test did nothing on this endpoint, visibly even when output is captured
/// (the line goes straight to the process's stderr, around the test harness's capture).
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}
