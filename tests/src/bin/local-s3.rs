//! A local S3 endpoint for benchmarks and demos: s3s-fs serving a folder on 127.0.0.1.
//!
//! `local-s3 [--lean] DIR [PORT] [BUCKET...]` creates the buckets (folders), prints
//! `endpoint=http://127.0.0.1:PORT` and serves until killed. Keys: `tributary-test` /
//! `tributary-test-secret` (SigV4 is checked). `--lean` serves the benchmark store
//! ([`tributary_testkit::bench_store`]) instead of s3s-fs.

use std::time::Duration;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let lean = args.next_if(|a| a == "--lean").is_some();
    let Some(dir) = args.next() else {
        eprintln!("usage: local-s3 [--lean] DIR [PORT] [BUCKET...]");
        std::process::exit(2);
    };
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    for bucket in args {
        if let Err(e) = std::fs::create_dir_all(std::path::Path::new(&dir).join(&bucket)) {
            eprintln!("cannot create bucket folder {bucket}: {e}");
            std::process::exit(1);
        }
    }
    let root = std::path::Path::new(&dir);
    let served = if lean {
        match tributary_testkit::bench_store::BenchStore::new(root) {
            Ok(store) => tributary_testkit::s3::serve_store(store, port).await,
            Err(e) => Err(e),
        }
    } else {
        tributary_testkit::s3::serve_on(root, port).await
    };
    let (addr, _faults, server) = match served {
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
