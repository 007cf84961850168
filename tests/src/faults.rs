//! Fault injection for the embedded S3 server.
//!
//! A [`FaultPlan`] sits in front of the S3 service. Every request is classified into an
//! [`Op`] from its method, path and query (as S3 routes them), counted, and checked against
//! the planned [`Fault`]s: answer with an error status (500, 503 `SlowDown`, ...), delay, or
//! cut the connection without an answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The S3 operations the plan can tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `PUT /bucket`
    CreateBucket,
    /// `PUT /bucket/key`
    PutObject,
    /// `GET /bucket/key`
    GetObject,
    /// `HEAD /bucket/key`
    HeadObject,
    /// `DELETE /bucket/key`
    DeleteObject,
    /// `POST /bucket/key?uploads`
    CreateMultipartUpload,
    /// `PUT /bucket/key?partNumber=N&uploadId=U`
    UploadPart,
    /// `POST /bucket/key?uploadId=U`
    CompleteMultipartUpload,
    /// `DELETE /bucket/key?uploadId=U`
    AbortMultipartUpload,
    /// `GET /bucket?list-type=2` and other bucket reads
    ListObjects,
    /// Anything else.
    Other,
}

impl Op {
    /// Classifies a path-style request.
    pub fn classify(method: &http::Method, path: &str, query: Option<&str>) -> Op {
        let has_key = path
            .trim_start_matches('/')
            .split_once('/')
            .is_some_and(|(_, k)| !k.is_empty());
        let q = query.unwrap_or("");
        let has = |name: &str| {
            q.split('&')
                .any(|p| p == name || p.starts_with(&format!("{name}=")))
        };
        use http::Method as M;
        match (method, has_key) {
            (&M::PUT, false) => Op::CreateBucket,
            (&M::PUT, true) if has("partNumber") && has("uploadId") => Op::UploadPart,
            (&M::PUT, true) => Op::PutObject,
            (&M::GET, true) => Op::GetObject,
            (&M::HEAD, true) => Op::HeadObject,
            (&M::POST, true) if has("uploads") => Op::CreateMultipartUpload,
            (&M::POST, true) if has("uploadId") => Op::CompleteMultipartUpload,
            (&M::DELETE, true) if has("uploadId") => Op::AbortMultipartUpload,
            (&M::DELETE, true) => Op::DeleteObject,
            (&M::GET, false) => Op::ListObjects,
            _ => Op::Other,
        }
    }
}

/// What a fault does to the request it hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer with this HTTP status and S3 error code, without touching the store.
    Status(u16, &'static str),
    /// Wait, then serve the request normally.
    Delay(Duration),
    /// Close the connection without answering.
    Reset,
    /// Serve the request, but break the connection after this many bytes of the response
    /// body (the headers promise all of it).
    CutBody(u64),
}

impl Action {
    /// 500 `InternalError`.
    pub fn internal_error() -> Action {
        Action::Status(500, "InternalError")
    }
    /// 503 `SlowDown`.
    pub fn slow_down() -> Action {
        Action::Status(503, "SlowDown")
    }
}

/// Which calls of an operation a fault hits (calls are counted from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calls {
    /// Exactly the n-th call.
    Nth(u64),
    /// The calls `from..from+count`.
    Range {
        /// First call hit.
        from: u64,
        /// How many calls are hit.
        count: u64,
    },
    /// Every call from the n-th on.
    From(u64),
}

impl Calls {
    fn hits(self, n: u64) -> bool {
        match self {
            Calls::Nth(k) => n == k,
            Calls::Range { from, count } => n >= from && n < from + count,
            Calls::From(k) => n >= k,
        }
    }
}

/// One planned fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The operation it applies to.
    pub op: Op,
    /// Which of its calls.
    pub calls: Calls,
    /// What happens.
    pub action: Action,
}

/// Faults to inject and counts of the calls seen. Cheap to clone (shared state).
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    inner: Arc<Mutex<PlanState>>,
}

#[derive(Debug, Default)]
struct PlanState {
    faults: Vec<Fault>,
    calls: HashMap<Op, u64>,
    injected: u64,
}

impl FaultPlan {
    /// Adds a fault.
    pub fn add(&self, op: Op, calls: Calls, action: Action) {
        self.lock().faults.push(Fault { op, calls, action });
    }

    /// Removes every fault (counts stay).
    pub fn clear(&self) {
        self.lock().faults.clear();
    }

    /// How many calls of `op` the server has seen.
    pub fn calls(&self, op: Op) -> u64 {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// Counts a call and returns the action of the first fault that hits it.
    pub fn on_call(&self, op: Op) -> Option<Action> {
        let mut st = self.lock();
        let n = {
            let c = st.calls.entry(op).or_insert(0);
            *c += 1;
            *c
        };
        let action = st
            .faults
            .iter()
            .find(|f| f.op == op && f.calls.hits(n))
            .map(|f| f.action.clone());
        if action.is_some() {
            st.injected += 1;
        }
        action
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PlanState> {
        // A panicking test thread must not hide the counts from the others.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn classifies_s3_requests_like_s3_routes_them() {
        let c = |m: Method, p: &str, q: Option<&str>| Op::classify(&m, p, q);
        assert_eq!(c(Method::PUT, "/b", None), Op::CreateBucket);
        assert_eq!(c(Method::PUT, "/b/", None), Op::CreateBucket);
        assert_eq!(c(Method::PUT, "/b/k/x", None), Op::PutObject);
        assert_eq!(
            c(Method::PUT, "/b/k", Some("partNumber=3&uploadId=u")),
            Op::UploadPart
        );
        assert_eq!(
            c(Method::POST, "/b/k", Some("uploads")),
            Op::CreateMultipartUpload
        );
        assert_eq!(
            c(Method::POST, "/b/k", Some("uploadId=u")),
            Op::CompleteMultipartUpload
        );
        assert_eq!(
            c(Method::DELETE, "/b/k", Some("uploadId=u")),
            Op::AbortMultipartUpload
        );
        assert_eq!(c(Method::DELETE, "/b/k", None), Op::DeleteObject);
        assert_eq!(
            c(Method::GET, "/b/k", Some("x-id=GetObject")),
            Op::GetObject
        );
        assert_eq!(c(Method::GET, "/b", Some("list-type=2")), Op::ListObjects);
    }

    #[test]
    fn faults_hit_exactly_the_planned_calls() {
        let plan = FaultPlan::default();
        plan.add(
            Op::UploadPart,
            Calls::Range { from: 2, count: 2 },
            Action::slow_down(),
        );
        plan.add(Op::GetObject, Calls::From(3), Action::Reset);
        let hits: Vec<bool> = (0..5)
            .map(|_| plan.on_call(Op::UploadPart).is_some())
            .collect();
        assert_eq!(hits, [false, true, true, false, false]);
        let hits: Vec<bool> = (0..4)
            .map(|_| plan.on_call(Op::GetObject).is_some())
            .collect();
        assert_eq!(hits, [false, false, true, true]);
        assert_eq!(plan.calls(Op::UploadPart), 5);
        assert_eq!(plan.injected(), 4);
        plan.clear();
        assert_eq!(plan.on_call(Op::GetObject), None);
    }
}
