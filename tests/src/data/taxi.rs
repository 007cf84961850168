//! A generated NYC-taxi-like trip table (the yellow-cab CSV layout the seed notes load with
//! pandas), deterministic for a seed: used by the converter's tests, the benchmarks and the
//! local demo.

use std::io::{self, Write};

use rand::{Rng, SeedableRng};

/// The header line's columns, in order.
pub const COLUMNS: [&str; 18] = [
    "VendorID",
    "tpep_pickup_datetime",
    "tpep_dropoff_datetime",
    "passenger_count",
    "trip_distance",
    "RatecodeID",
    "store_and_fwd_flag",
    "PULocationID",
    "DOLocationID",
    "payment_type",
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "improvement_surcharge",
    "total_amount",
    "congestion_surcharge",
];

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct TaxiOptions {
    /// Random seed: the same seed always gives the same bytes.
    pub seed: u64,
    /// Stop after this many data rows (including bad ones)...
    pub rows: Option<u64>,
    /// ...or once this many bytes are written (whichever comes first; at least one bound).
    pub bytes: Option<u64>,
    /// Every `n`-th row is malformed (a missing column), to exercise quarantine.
    pub bad_every: Option<u64>,
    /// Pickups are spread over this many days from 2024-01-01, advancing with the row number
    /// (give or take two hours), as in real trip files.
    pub days: u32,
}

impl Default for TaxiOptions {
    fn default() -> Self {
        TaxiOptions {
            seed: 20261123,
            rows: Some(1000),
            bytes: None,
            bad_every: None,
            days: 31,
        }
    }
}

/// What was generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaxiStats {
    /// Data rows written (good and bad).
    pub rows: u64,
    /// Malformed rows among them.
    pub bad_rows: u64,
    /// Bytes written, header included.
    pub bytes: u64,
    /// Good rows per pickup day, index 0 = 2024-01-01.
    pub rows_per_day: Vec<u64>,
}

/// Writes the CSV (header first) to `out`.
pub fn write_csv(out: &mut impl Write, opts: &TaxiOptions) -> io::Result<TaxiStats> {
    assert!(
        opts.rows.is_some() || opts.bytes.is_some(),
        "bound the output"
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let mut stats = TaxiStats {
        rows: 0,
        bad_rows: 0,
        bytes: 0,
        rows_per_day: vec![0; 366],
    };
    let mut line = String::with_capacity(256);
    line.push_str(&COLUMNS.join(","));
    line.push('\n');
    out.write_all(line.as_bytes())?;
    stats.bytes += line.len() as u64;
    let days = opts.days.clamp(1, 366);
    let expected_rows = opts
        .rows
        .unwrap_or(u64::MAX)
        .min(opts.bytes.map_or(u64::MAX, |b| b / 101))
        .max(1);
    loop {
        if opts.rows.is_some_and(|r| stats.rows >= r)
            || opts.bytes.is_some_and(|b| stats.bytes >= b)
        {
            break;
        }
        line.clear();
        let n = stats.rows + 1;
        let bad = opts.bad_every.is_some_and(|e| e > 0 && n.is_multiple_of(e));
        // Trip files are ordered by time, roughly: pickups advance through the days with the
        // row number, give or take two hours.
        let span = u64::from(days) * 86_400;
        let at = (span as f64 * (stats.rows as f64 / expected_rows as f64)) as i64;
        let pickup = (at + rng.random_range(-7_200..7_200i64)).clamp(0, span as i64 - 1) as u64;
        let day = (pickup / 86_400) as u32;
        let minutes = rng.random_range(2..60u64);
        let dropoff = pickup + minutes * 60 + rng.random_range(0..60u64);
        let distance = f64::from(rng.random_range(10..2500u32)) / 100.0;
        let fare = 3.0 + distance * 2.5 + minutes as f64 * 0.5;
        let tip = if rng.random_bool(0.6) {
            (fare * 0.2 * 100.0).round() / 100.0
        } else {
            0.0
        };
        let tolls = if rng.random_bool(0.05) { 6.94 } else { 0.0 };
        let total = fare + 0.5 + 0.5 + tip + tolls + 1.0 + 2.5;
        use std::fmt::Write as _;
        let _ = write!(
            line,
            "{},{},{},",
            rng.random_range(1..3u8),
            Stamp(pickup),
            Stamp(dropoff)
        );
        // Real trip records leave passenger_count empty now and then.
        if !rng.random_bool(0.02) {
            let _ = write!(line, "{}", rng.random_range(1..7u8));
        }
        let _ = write!(
            line,
            ",{distance:.2},{},{},{},{},{},{fare:.2},0.5,0.5,{tip:.2},{tolls:.2},1.0,{total:.2}",
            if rng.random_bool(0.97) { 1 } else { 2 },
            if rng.random_bool(0.99) { "N" } else { "Y" },
            rng.random_range(1..266u16),
            rng.random_range(1..266u16),
            rng.random_range(1..5u8),
        );
        if !bad {
            line.push_str(",2.5");
            stats.rows_per_day[day as usize] += 1;
        } else {
            stats.bad_rows += 1;
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
        stats.bytes += line.len() as u64;
        stats.rows += 1;
    }
    Ok(stats)
}

/// `2024-01-01 00:00:00` plus `secs`, as `YYYY-MM-DD HH:MM:SS`.
struct Stamp(u64);

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const DAYS: [u64; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        let (mut day, rest) = (self.0 / 86_400, self.0 % 86_400);
        let mut month = 0;
        while month < 11 && day >= DAYS[month] {
            day -= DAYS[month];
            month += 1;
        }
        write!(
            f,
            "2024-{:02}-{:02} {:02}:{:02}:{:02}",
            month + 1,
            day + 1,
            rest / 3600,
            rest / 60 % 60,
            rest % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_and_counts_add_up() {
        let opts = TaxiOptions {
            rows: Some(500),
            bad_every: Some(100),
            ..TaxiOptions::default()
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let sa = write_csv(&mut a, &opts).expect("write");
        let sb = write_csv(&mut b, &opts).expect("write");
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        assert_eq!((sa.rows, sa.bad_rows), (500, 5));
        assert_eq!(sa.rows_per_day.iter().sum::<u64>(), 495);
        assert_eq!(sa.bytes, a.len() as u64);
        let text = String::from_utf8(a).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 501);
        assert_eq!(lines[0].split(',').count(), COLUMNS.len());
        assert_eq!(lines[1].split(',').count(), COLUMNS.len());
        assert_eq!(lines[100].split(',').count(), COLUMNS.len() - 1);
        assert_eq!(Stamp(31 * 86_400 + 3661).to_string(), "2024-02-01 01:01:01");
    }

    #[test]
    fn byte_bound_stops_near_the_size() {
        let opts = TaxiOptions {
            rows: None,
            bytes: Some(100_000),
            ..TaxiOptions::default()
        };
        let s = write_csv(&mut io::sink(), &opts).expect("write");
        assert!(s.bytes >= 100_000 && s.bytes < 100_400, "{}", s.bytes);
    }
}
