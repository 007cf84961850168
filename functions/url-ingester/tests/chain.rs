//! A long continuation chain: one object fetched over more invocations than Lambda's
//! recursive-loop detection allows by default (about 16), each leg stopped by its deadline
//! and continued from its checkpoint, as `CONTINUE_ASYNC` does through `Invoke` (here the
//! test hands each checkpoint to the next leg itself).

mod common;

use std::time::{Duration, SystemTime};

use common::World;
use tributary_testkit::data::{MIB, random_bytes, sha256_hex};
use tributary_testkit::{HttpFault, Resource};
use url_ingester::{IngestRequest, IngestResponse};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_twenty_checkpoints_completes_one_identical_object() {
    let w = World::new().await;
    let ing = w.ingester(&[("DEADLINE_MARGIN_SECS", "1")]);
    let body = random_bytes(21 * 5 * MIB + 123, 20);
    // Every request sends a part and a bit at once, then stalls past the leg's deadline: each
    // leg ends with exactly one more part, whatever the machine's speed.
    w.http.serve(
        "/long.bin",
        Resource::new(body.clone()).fault(HttpFault::StallAfter {
            after: 5 * MIB + 256 * 1024,
            pause: Duration::from_millis(1_500),
        }),
    );
    let mut request = IngestRequest {
        url: w.http.url("/long.bin"),
        key: Some("raw/long.bin".to_owned()),
        ..IngestRequest::default()
    };
    let (mut legs, mut checkpoints) = (0u32, 0u32);
    let done = loop {
        legs += 1;
        assert!(legs <= 60, "the chain does not end");
        // 1 s of margin: the leg stops at its first chunk after 1.2 s, within the stall.
        let deadline = SystemTime::now() + Duration::from_millis(2_200);
        match ing
            .run(request.clone(), Some(deadline), None)
            .await
            .unwrap_or_else(|e| panic!("leg {legs}: {}: {e}", e.error_type()))
        {
            IngestResponse::Complete(c) => break c,
            IngestResponse::Incomplete(inc) => {
                checkpoints += 1;
                assert_eq!(
                    inc.bytes,
                    u64::from(checkpoints) * 5 * MIB as u64,
                    "one part a leg"
                );
                assert!(
                    !w.s3.exists(&w.bucket, "raw/long.bin").await,
                    "nothing visible before the last leg"
                );
                // Through JSON, as through an invocation's payload.
                let json = serde_json::to_string(&inc.checkpoint).expect("ser");
                request.resume = Some(serde_json::from_str(&json).expect("de"));
            }
        }
    };
    assert!(checkpoints >= 20, "{checkpoints} checkpoints");
    assert_eq!(done.invocations, legs);
    assert_eq!(done.bytes, body.len() as u64);
    assert_eq!(done.sha256, sha256_hex(&body), "the hash spans every leg");
    assert_eq!(
        sha256_hex(&w.s3.get(&w.bucket, "raw/long.bin").await),
        sha256_hex(&body)
    );
    w.assert_no_uploads_left().await;
}
