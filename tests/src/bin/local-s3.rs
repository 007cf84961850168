//! A local S3 endpoint for benchmarks and demos: s3s-fs serving a folder on 127.0.0.1.
//!
//! `local-s3 DIR [PORT] [BUCKET...]` creates the buckets (folders), prints
//! `endpoint=http://127.0.0.1:PORT` and serves until killed. Keys: `tributary-test` /
//! `tributary-test-secret` (SigV4 is checked).

use std::time::Duration;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: local-s3 DIR [PORT] [BUCKET...]");
        std::process::exit(2);
    };
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    for bucket in args {
        if let Err(e) = std::fs::create_dir_all(std::path::Path::new(&dir).join(&bucket)) {
            eprintln!("cannot create bucket folder {bucket}: {e}");
            std::process::exit(1);
        }
    }
    let (addr, _faults, server) =
        match tributary_testkit::s3::serve_on(std::path::Path::new(&dir), port).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot start the S3 server on {dir}: {e}");
                std::process::exit(1);
            }
        };
    println!("endpoint=http://{addr}");
    let _ = server.await;
    tokio::time::sleep(Duration::from_millis(10)).await;
}
