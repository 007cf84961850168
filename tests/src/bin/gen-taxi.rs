//! Writes a generated NYC-taxi-like CSV (deterministic for a seed).
//!
//! ```sh
//! gen-taxi OUT.csv (--rows N | --bytes N) [--seed S] [--bad-every N] [--days D]
//! ```
//! Prints one JSON line: rows, bad_rows, bytes.

use std::io::BufWriter;

use tributary_testkit::data::taxi::{TaxiOptions, write_csv};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: gen-taxi OUT.csv (--rows N | --bytes N) [--seed S] [--bad-every N] [--days D]";
    let Some(path) = args.first().filter(|a| !a.starts_with("--")) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let mut opts = TaxiOptions {
        rows: None,
        ..TaxiOptions::default()
    };
    let mut it = args[1..].iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .and_then(|v| v.replace('_', "").parse::<u64>().ok());
        let Some(v) = value else {
            eprintln!("{flag} needs a number\n{usage}");
            std::process::exit(2);
        };
        match flag.as_str() {
            "--rows" => opts.rows = Some(v),
            "--bytes" => opts.bytes = Some(v),
            "--seed" => opts.seed = v,
            "--bad-every" => opts.bad_every = Some(v),
            "--days" => opts.days = u32::try_from(v).unwrap_or(366),
            _ => {
                eprintln!("unknown option {flag}\n{usage}");
                std::process::exit(2);
            }
        }
    }
    if opts.rows.is_none() && opts.bytes.is_none() {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let result = std::fs::File::create(path).and_then(|f| {
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let stats = write_csv(&mut w, &opts)?;
        std::io::Write::flush(&mut w)?;
        Ok(stats)
    });
    match result {
        Ok(s) => println!(
            "{{\"rows\":{},\"bad_rows\":{},\"bytes\":{}}}",
            s.rows, s.bad_rows, s.bytes
        ),
        Err(e) => {
            eprintln!("writing {path}: {e}");
            std::process::exit(1);
        }
    }
}
