//! A backfill as the state machine runs it, with this test standing in for the map and
//! nothing else: the prefix listed page by page (ListObjectsV2), the listing's entries handed
//! to the real handler in batches (`Items` + `BatchInput`, the map's batcher), several at a
//! time. Every object converts once; a second run over the same prefix changes nothing.

use std::collections::BTreeMap;

use futures::StreamExt;
use lambda_runtime::{Context, LambdaEvent};
use parquet_converter::{Converter, Outcome};
use serde_json::{Value, json};
use tributary_testkit::TestS3;

mod common;
use common::converter;

const OBJECTS: usize = 300;
const BATCH: usize = 16;

/// The map's items: each listed object as S3's listing gives it (`Key`, `Etag`, `Size`).
async fn list(s3: &TestS3, bucket: &str, prefix: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .max_keys(100)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list");
        for o in page.contents() {
            items.push(json!({"Key": o.key(), "Etag": o.e_tag(), "Size": o.size()}));
        }
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return items;
        }
    }
}

/// One run of the backfill: the statuses of every item, in listing order.
async fn backfill(s3: &TestS3, c: &Converter, bucket: &str, prefix: &str) -> Vec<String> {
    let items = list(s3, bucket, prefix).await;
    let batches: Vec<Value> = items
        .chunks(BATCH)
        .map(|chunk| json!({"BatchInput": {"bucket": bucket}, "Items": chunk}))
        .collect();
    let answers: Vec<_> = futures::stream::iter(batches)
        .map(|event| async move {
            c.handle(LambdaEvent::new(event, Context::default()))
                .await
                .expect("a batch of the backfill")
        })
        .buffered(4)
        .collect()
        .await;
    answers
        .iter()
        .flat_map(|r| r.results.iter().map(|o| Outcome::status(o).to_owned()))
        .collect()
}

/// Every object under `prefix` with its ETag.
async fn snapshot(s3: &TestS3, bucket: &str, prefix: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for item in list(s3, bucket, prefix).await {
        out.insert(
            item["Key"].as_str().unwrap_or_default().to_owned(),
            item["Etag"].as_str().unwrap_or_default().to_owned(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_of_hundreds_of_objects_converts_each_once_and_a_second_run_changes_nothing() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[("PARTITION_BY", "ts:day")]).await;
    for i in 0..OBJECTS {
        let day = 1 + i % 28;
        let body = format!(
            "id,ts,amount\n{i},2024-02-{day:02} 10:00:00,{i}.25\n{i},2024-02-{day:02} 11:30:00,1.5\n"
        );
        s3.put(
            &bucket,
            &format!("raw/backfill/part-{i:04}.csv"),
            body.into_bytes(),
        )
        .await;
    }
    let statuses = backfill(&s3, &c, &bucket, "raw/backfill/").await;
    assert_eq!(statuses.len(), OBJECTS);
    assert!(statuses.iter().all(|s| s == "converted"), "{statuses:?}");
    let first = snapshot(&s3, &bucket, "processed/backfill/").await;
    let files = first.keys().filter(|k| k.ends_with(".parquet")).count();
    let manifests = snapshot(&s3, &bucket, "processed/_manifests/backfill/").await;
    assert_eq!(files, OBJECTS, "one file per object (each holds one day)");
    assert_eq!(manifests.len(), OBJECTS);
    assert_eq!(
        first
            .keys()
            .filter_map(|k| k.split('/').find(|s| s.starts_with("day=")))
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        28
    );

    let again = backfill(&s3, &c, &bucket, "raw/backfill/").await;
    assert_eq!(again.len(), OBJECTS);
    assert!(again.iter().all(|s| s == "converted"), "{again:?}");
    assert_eq!(
        snapshot(&s3, &bucket, "processed/backfill/").await,
        first,
        "the same keys with the same contents"
    );
    assert_eq!(
        snapshot(&s3, &bucket, "processed/_manifests/backfill/")
            .await
            .len(),
        OBJECTS
    );
}

/// The backfill's totals: one child per object as the map runs them, its results written as
/// the map's ResultWriter writes them (`manifest.json` listing `SUCCEEDED_n.json` and
/// `FAILED_n.json`, arrays of child executions with `Input`, `Output` or `Error` and `Cause`),
/// then `{"mode": "totals"}` over them: objects, rows, bad rows, and each failure with its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_totals_of_a_backfill_count_rows_bad_rows_and_failures_with_their_keys() {
    let s3 = TestS3::start().await;
    let bucket = s3.bucket().await;
    let c = converter(&s3, &[("PARTITION_BY", "ts:day")]).await;
    for i in 0..12 {
        let body = format!(
            "id,ts,amount\n{i},2024-02-03 10:00:00,{i}.25\nbroken row\n{i},2024-02-04 11:30:00,1.5\n"
        );
        s3.put(
            &bucket,
            &format!("raw/totals/part-{i:02}.csv"),
            body.into_bytes(),
        )
        .await;
    }
    s3.put(
        &bucket,
        "raw/totals/unclosed.csv",
        b"id,note\n1,\"never closed\n2,x\n".to_vec(),
    )
    .await;
    s3.put(&bucket, "raw/totals/already.parquet", b"PAR1".to_vec())
        .await;
    let (mut succeeded, mut failed) = (Vec::new(), Vec::new());
    for item in list(&s3, &bucket, "raw/totals/").await {
        let event = json!({"bucket": bucket, "key": item["Key"], "etag": item["Etag"], "size": item["Size"]});
        let child = match c
            .invoke(LambdaEvent::new(event.clone(), Context::default()))
            .await
        {
            Ok(answer) => json!({"ExecutionArn": "arn:child", "Input": event.to_string(),
                "Output": answer.to_string(), "Status": "SUCCEEDED"}),
            Err(e) => json!({"ExecutionArn": "arn:child", "Input": event.to_string(),
                "Error": e.error_type(), "Cause": e.to_string(), "Status": "FAILED"}),
        };
        if child["Status"] == "SUCCEEDED" {
            succeeded.push(child)
        } else {
            failed.push(child)
        }
    }
    let run = "backfill/0f0e/";
    s3.put(
        &bucket,
        &format!("{run}SUCCEEDED_0.json"),
        serde_json::to_vec(&succeeded).expect("json"),
    )
    .await;
    s3.put(
        &bucket,
        &format!("{run}FAILED_0.json"),
        serde_json::to_vec(&failed).expect("json"),
    )
    .await;
    let manifest = json!({"DestinationBucket": bucket, "MapRunArn": "arn:map-run",
        "ResultFiles": {"FAILED": [{"Key": format!("{run}FAILED_0.json"), "Size": 1}], "PENDING": [],
                        "SUCCEEDED": [{"Key": format!("{run}SUCCEEDED_0.json"), "Size": 1}]}});
    s3.put(
        &bucket,
        &format!("{run}manifest.json"),
        manifest.to_string().into_bytes(),
    )
    .await;
    let totals: parquet_converter::totals::Totals = serde_json::from_value(
        c.invoke(LambdaEvent::new(
            json!({"mode": "totals", "bucket": bucket, "key": format!("{run}manifest.json")}),
            Context::default(),
        ))
        .await
        .expect("totals"),
    )
    .expect("a totals answer");
    assert_eq!(totals.objects, 14);
    assert_eq!(
        (totals.converted, totals.skipped, totals.failed),
        (12, 1, 1),
        "{totals:?}"
    );
    assert_eq!((totals.rows, totals.bad_rows), (24, 12));
    assert_eq!(totals.failures.len(), 1);
    assert_eq!(totals.failures[0].key, "raw/totals/unclosed.csv");
    assert_eq!(totals.failures[0].error, "DecodeError");
    assert!(
        totals.failures[0].cause.contains("never closes"),
        "{:?}",
        totals.failures[0]
    );
}
