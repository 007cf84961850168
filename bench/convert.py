"""Benchmark: parquet-converter against the tools people use today, in one run, on one machine.

A generated NYC-taxi-like CSV (gen-taxi, fixed seed, no bad rows) of each size is put into a
local S3 endpoint (s3s-fs, `local-s3`) under raw/taxi/, then converted to Parquet (zstd)
partitioned by the pickup day (year=/month=/day=), S3 to S3, by:

  parquet-converter  our Lambda handler, through examples/convert.rs (PARTITION_BY=tpep_pickup_datetime:day)
  pyarrow            pyarrow.csv.open_csv streaming from pyarrow.fs.S3FileSystem, year/month/day
                     columns added per batch, pyarrow.dataset.write_dataset(hive partitioning) to S3,
                     row groups of at least 65,536 rows (its default, a row group per batch and
                     partition, writes files twice the size)
  DuckDB             COPY (SELECT *, year(..), month(..), day(..) FROM read_csv('s3://..')) TO 's3://..'
                     (FORMAT parquet, PARTITION_BY (year, month, day), COMPRESSION zstd); httpfs comes
                     from PyPI (duckdb-extension-httpfs), loaded from its file: no download at run time
  Polars             scan_csv('s3://..') -> sink_parquet(PartitionBy(key=[year, month, day])), streaming

The peers are given the table's schema (timestamps in microseconds, like ours), which spares
them type inference; ours infers the types itself. Every command runs as its own process under
/usr/bin/time: wall seconds, CPU seconds and peak RSS are the operating system's figures (the
S3 server's own CPU is not counted in anyone's). Every output is read back with pyarrow: rows,
partitions, every row in the partition of its own pickup day, and the sum of total_amount equal
across the tools. Run with scripts/bench.sh converter.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

import boto3
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from botocore.config import Config

MIB = 1024 * 1024
KEY_ID, SECRET = "tributary-test", "tributary-test-secret"
BUCKET = "bench"
SEED = 20261123
RSS_LIMIT_MIB = 256
RSS_GROWTH = 1.3

TOOLS = ["ours", "pyarrow", "duckdb", "polars"]
LABELS = {"ours": "parquet-converter", "pyarrow": "pyarrow", "duckdb": "DuckDB", "polars": "Polars"}

# The generated table's columns (tests/src/data/taxi.rs) and the types the peers are told.
SCHEMA = [
    ("VendorID", "int64"), ("tpep_pickup_datetime", "timestamp"), ("tpep_dropoff_datetime", "timestamp"),
    ("passenger_count", "int64"), ("trip_distance", "float64"), ("RatecodeID", "int64"),
    ("store_and_fwd_flag", "string"), ("PULocationID", "int64"), ("DOLocationID", "int64"),
    ("payment_type", "int64"), ("fare_amount", "float64"), ("extra", "float64"), ("mta_tax", "float64"),
    ("tip_amount", "float64"), ("tolls_amount", "float64"), ("improvement_surcharge", "float64"),
    ("total_amount", "float64"), ("congestion_surcharge", "float64"),
]

# Each peer is a Python program run as its own process:
#   argv: endpoint host:port, source key, destination prefix, schema JSON, [extra]
PEER_COMMON = r"""
import json, sys
endpoint, src, dst, schema = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
KEY_ID, SECRET, BUCKET = %r, %r, %r
""" % (KEY_ID, SECRET, BUCKET)

PYARROW = PEER_COMMON + r"""
import pyarrow as pa, pyarrow.csv as csv, pyarrow.compute as pc, pyarrow.dataset as ds, pyarrow.fs as pafs
types = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(), "timestamp": pa.timestamp("us")}
s3 = pafs.S3FileSystem(access_key=KEY_ID, secret_key=SECRET, region="us-east-1",
                       endpoint_override=endpoint, scheme="http")
reader = csv.open_csv(s3.open_input_stream(f"{BUCKET}/{src}"),
                      convert_options=csv.ConvertOptions(column_types={n: types[t] for n, t in schema}))
ts = "tpep_pickup_datetime"
parts = [pa.field("year", pa.int32()), pa.field("month", pa.int32()), pa.field("day", pa.int32())]
out_schema = reader.schema
for f in parts:
    out_schema = out_schema.append(f)

def batches():
    for b in reader:
        t = b.column(ts)
        yield pa.RecordBatch.from_arrays(
            b.columns + [pc.year(t).cast(pa.int32()), pc.month(t).cast(pa.int32()), pc.day(t).cast(pa.int32())],
            schema=out_schema)

ds.write_dataset(batches(), f"{BUCKET}/{dst}", schema=out_schema, format="parquet", filesystem=s3,
                 partitioning=ds.partitioning(pa.schema(parts), flavor="hive"),
                 file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"),
                 existing_data_behavior="overwrite_or_ignore",
                 # The default writes a row group per incoming batch and partition (a few hundred rows
                 # here), doubling the file size: this is what a user tunes first.
                 min_rows_per_group=65536, max_rows_per_group=1048576)
"""

DUCKDB = PEER_COMMON + r"""
import os, duckdb, duckdb_extension_httpfs
local_out = sys.argv[5] if len(sys.argv) > 5 else ""
types = {"int64": "BIGINT", "float64": "DOUBLE", "string": "VARCHAR", "timestamp": "TIMESTAMP"}
columns = "{" + ", ".join(f"'{n}': '{types[t]}'" for n, t in schema) + "}"
con = duckdb.connect()
ts = "tpep_pickup_datetime"
select = f"SELECT *, year({ts}) AS year, month({ts}) AS month, day({ts}) AS day FROM {{source}}"
options = "FORMAT parquet, PARTITION_BY (year, month, day), COMPRESSION zstd, OVERWRITE_OR_IGNORE"
if not local_out:
    # httpfs from its PyPI package, loaded from the file: nothing is downloaded.
    ext = os.path.join(os.path.dirname(duckdb_extension_httpfs.__file__), "extensions",
                       "v" + duckdb.__version__, "httpfs.duckdb_extension")
    con.execute(f"LOAD '{ext}'")
    con.execute(f"CREATE SECRET (TYPE s3, KEY_ID '{KEY_ID}', SECRET '{SECRET}', REGION 'us-east-1', "
                f"ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false)")
    source = f"read_csv('s3://{BUCKET}/{src}', header = true, columns = {columns})"
    con.execute(f"COPY ({select.format(source=source)}) TO 's3://{BUCKET}/{dst}' ({options})")
else:
    # Fallback without httpfs: the CSV arrives through pyarrow's S3 stream, Parquet goes to local disk.
    import pyarrow as pa, pyarrow.csv as csv, pyarrow.fs as pafs
    patypes = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(), "timestamp": pa.timestamp("us")}
    s3 = pafs.S3FileSystem(access_key=KEY_ID, secret_key=SECRET, region="us-east-1",
                           endpoint_override=endpoint, scheme="http")
    stream = csv.open_csv(s3.open_input_stream(f"{BUCKET}/{src}"),
                          convert_options=csv.ConvertOptions(column_types={n: patypes[t] for n, t in schema}))
    con.register("stream", stream)
    con.execute(f"COPY ({select.format(source='stream')}) TO '{local_out}' ({options})")
"""

POLARS = PEER_COMMON + r"""
import polars as pl
types = {"int64": pl.Int64, "float64": pl.Float64, "string": pl.String, "timestamp": pl.Datetime("us")}
opts = {"aws_endpoint_url": f"http://{endpoint}", "aws_allow_http": "true", "aws_access_key_id": KEY_ID,
        "aws_secret_access_key": SECRET, "aws_region": "us-east-1"}
ts = pl.col("tpep_pickup_datetime")
(pl.scan_csv(f"s3://{BUCKET}/{src}", schema={n: types[t] for n, t in schema}, storage_options=opts)
   .sink_parquet(pl.PartitionBy(f"s3://{BUCKET}/{dst}",
                                key=[ts.dt.year().alias("year"), ts.dt.month().alias("month"), ts.dt.day().alias("day")],
                                include_key=False),
                 compression="zstd", storage_options=opts))
"""


def timed(cmd, env):
    """Runs cmd under /usr/bin/time; returns (wall s, cpu s, peak RSS MiB, stdout)."""
    out = tempfile.NamedTemporaryFile(delete=False)
    out.close()
    full = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", out.name] + cmd
    try:
        proc = subprocess.run(full, env=env, capture_output=True, text=True)
        with open(out.name) as f:
            lines = [l for l in f.read().splitlines() if l.strip()]
    finally:
        os.unlink(out.name)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} {' '.join(cmd[1:2])} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    wall, user, sys_, rss_kb = lines[-1].split()
    return float(wall), float(user) + float(sys_), int(rss_kb) / 1024, proc.stdout


def parquet_files(root):
    """The .parquet files under a local folder (an s3s-fs bucket folder or a plain one)."""
    found = []
    for dirpath, _, names in os.walk(root):
        found += [os.path.join(dirpath, n) for n in names if n.endswith(".parquet")]
    return sorted(found)


def check_output(root):
    """Reads a Hive-partitioned output back with pyarrow: rows, partitions, bytes, misplaced rows,
    sum(total_amount)."""
    files = parquet_files(root)
    if not files:
        raise RuntimeError(f"no Parquet files under {root}")
    dataset = ds.dataset(files, format="parquet", partition_base_dir=root,
                         partitioning=ds.partitioning(pa.schema([("year", pa.int32()), ("month", pa.int32()),
                                                                 ("day", pa.int32())]), flavor="hive"))
    table = dataset.to_table(columns=["tpep_pickup_datetime", "total_amount", "year", "month", "day"])
    t = table.column("tpep_pickup_datetime")
    misplaced = 0
    for part, fn in (("year", pc.year), ("month", pc.month), ("day", pc.day)):
        misplaced += pc.sum(pc.cast(pc.not_equal(fn(t), pc.cast(table.column(part), pa.int64())), pa.int64())).as_py() or 0
    partitions = {os.path.relpath(os.path.dirname(f), root) for f in files}
    return {"rows": table.num_rows, "partitions": len(partitions), "files": len(files),
            "output_bytes": sum(os.path.getsize(f) for f in files), "misplaced_rows": misplaced,
            "total_amount_sum": pc.sum(table.column("total_amount")).as_py(),
            "timestamp_type": str(dataset.schema.field("tpep_pickup_datetime").type)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes-mib", "--sizes-mb", default="100,1024",
                    help="CSV sizes in MiB, comma-separated (the targets compare the smallest and largest)")
    ap.add_argument("--days", type=int, default=31, help="pickup days, hence partitions")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--tools", default=",".join(TOOLS), help="subset of " + ",".join(TOOLS))
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes_mib.split(",") if s.strip()]
    tools = [t for t in args.tools.split(",") if t]
    unknown = set(tools) - set(TOOLS)
    if unknown or "ours" not in tools:
        sys.exit(f"--tools: unknown {sorted(unknown)} (ours is required)" if unknown else "--tools must include ours")

    load_start = os.getloadavg()[0]
    work = tempfile.mkdtemp(prefix="tributary-convert-bench-")
    s3_proc = None
    try:
        s3_dir, local_dir = os.path.join(work, "s3"), os.path.join(work, "local")
        os.makedirs(s3_dir)
        os.makedirs(local_dir)
        # Snapshot the binaries: a build into the same target directory during the run must not
        # swap them between the sizes.
        bins = os.path.join(work, "bin")
        os.makedirs(bins)
        for rel in ("local-s3", "gen-taxi", os.path.join("examples", "convert")):
            shutil.copy2(os.path.join(args.bin_dir, rel), os.path.join(bins, os.path.basename(rel)))
        s3_proc = subprocess.Popen([os.path.join(bins, "local-s3"), s3_dir, "0", BUCKET],
                                   stdout=subprocess.PIPE, text=True)
        first = s3_proc.stdout.readline().strip()
        if not first.startswith("endpoint="):
            raise RuntimeError(f"local-s3 did not start: {first!r}")
        endpoint = first.split("=", 1)[1]
        hostport = endpoint.split("://", 1)[1].rstrip("/")
        bucket_dir = os.path.join(s3_dir, BUCKET)
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
                          region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))

        env = dict(os.environ, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1", AWS_EC2_METADATA_DISABLED="true",
                   AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1")
        for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            env.pop(k, None)
        ours_env = dict(env, AWS_ENDPOINT_URL_S3=endpoint, S3_FORCE_PATH_STYLE="true",
                        PARTITION_BY="tpep_pickup_datetime:day", RUST_LOG="warn")
        schema_json = json.dumps(SCHEMA)

        # DuckDB's S3 access: httpfs from PyPI, or (when it cannot load) pyarrow's stream in, local disk out.
        duckdb_s3 = True
        if "duckdb" in tools:
            probe = subprocess.run([sys.executable, "-c",
                                    "import os, duckdb, duckdb_extension_httpfs as h\n"
                                    "con = duckdb.connect()\n"
                                    "con.execute(\"LOAD '\" + os.path.join(os.path.dirname(h.__file__), 'extensions', "
                                    "'v' + duckdb.__version__, 'httpfs.duckdb_extension') + \"'\")"],
                                   env=env, capture_output=True, text=True)
            duckdb_s3 = probe.returncode == 0
            if not duckdb_s3:
                print("DuckDB httpfs could not be loaded offline; DuckDB reads through pyarrow's S3 stream and "
                      "writes to local disk (no S3 writes: an advantage for DuckDB).\n" + probe.stderr[-500:])
        duckdb_io = ("S3 both ways (httpfs from PyPI duckdb-extension-httpfs)" if duckdb_s3 else
                     "CSV from S3 through a pyarrow stream, Parquet to LOCAL DISK (httpfs unavailable "
                     "offline): it skips the S3 writes, an advantage for DuckDB")

        results = []
        for size in sizes:
            csv_path = os.path.join(work, f"taxi-{size}mib.csv")
            gen = subprocess.run([os.path.join(bins, "gen-taxi"), csv_path, "--bytes", str(size * MIB),
                                  "--seed", str(args.seed), "--days", str(args.days)],
                                 capture_output=True, text=True, check=True)
            generated = json.loads(gen.stdout.strip().splitlines()[-1])
            assert generated["bad_rows"] == 0, generated
            key = f"raw/taxi/taxi-{size}mib.csv"
            # One PutObject with a binary content type (stores may compress what looks like text).
            with open(csv_path, "rb") as f:
                s3.put_object(Bucket=BUCKET, Key=key, Body=f, ContentType="application/octet-stream")
            csv_bytes = os.path.getsize(csv_path)
            os.unlink(csv_path)
            csv_mib = csv_bytes / MIB
            print(f"\n{size} MiB: {generated['rows']:,} rows over {args.days} days, "
                  f"{csv_bytes:,} bytes in s3://{BUCKET}/{key}", flush=True)

            rows = {}
            for tool in tools:
                dst = f"processed-{tool}/taxi"
                out_root = os.path.join(bucket_dir, dst)
                if tool == "ours":
                    cmd, e = [os.path.join(bins, "convert"), f"s3://{BUCKET}/{key}"], ours_env
                    out_root = os.path.join(bucket_dir, "processed", "taxi")
                elif tool == "pyarrow":
                    cmd, e = [sys.executable, "-c", PYARROW, hostport, key, dst, schema_json], env
                elif tool == "duckdb":
                    cmd, e = [sys.executable, "-c", DUCKDB, hostport, key, dst, schema_json], env
                    if not duckdb_s3:
                        out_root = os.path.join(local_dir, "duckdb")
                        cmd.append(out_root)
                else:
                    cmd, e = [sys.executable, "-c", POLARS, hostport, key, dst, schema_json], env
                wall, cpu, rss, out = timed(cmd, e)
                r = {"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": rss, "mib_per_s": csv_mib / wall}
                if tool == "ours":
                    resp = json.loads(out.strip().splitlines()[-1])  # metrics lines may come first
                    results_ = resp.get("results") or [{}]
                    if results_[0].get("status") != "converted":
                        raise RuntimeError(f"the converter did not convert: {resp}")
                    r["response_rows"] = results_[0].get("rows")
                r.update(check_output(out_root))
                rows[tool] = r
                print(f"  {LABELS[tool]:18} {r['mib_per_s']:7.1f} MiB/s  {wall:7.2f} s  {cpu:7.2f} CPU s  "
                      f"{rss:7.1f} MiB peak  {r['rows']:,} rows in {r['partitions']} partitions, "
                      f"{r['files']} files, {r['output_bytes'] / MIB:.1f} MiB", flush=True)
                # Keep the store small: outputs are deleted once checked.
                shutil.rmtree(out_root, ignore_errors=True)
            shutil.rmtree(os.path.join(bucket_dir, "processed"), ignore_errors=True)
            s3.delete_object(Bucket=BUCKET, Key=key)

            ours = rows["ours"]
            problems = []
            if ours["rows"] != generated["rows"] or ours.get("response_rows") != generated["rows"]:
                problems.append(f"ours wrote {ours['rows']} rows (response says {ours.get('response_rows')}), "
                                f"generated {generated['rows']}")
            if ours["partitions"] != args.days:
                problems.append(f"ours wrote {ours['partitions']} partitions, expected {args.days}")
            for tool, r in rows.items():
                if r["misplaced_rows"]:
                    problems.append(f"{tool}: {r['misplaced_rows']} rows in another day's partition")
                if r["rows"] != generated["rows"]:
                    problems.append(f"{tool}: {r['rows']} rows, generated {generated['rows']}")
                if abs(r["total_amount_sum"] - ours["total_amount_sum"]) > 1e-6 * abs(ours["total_amount_sum"]):
                    problems.append(f"{tool}: sum(total_amount) {r['total_amount_sum']} != ours {ours['total_amount_sum']}")
            if problems:
                raise RuntimeError("output check failed:\n  " + "\n  ".join(problems))
            results.append({"size_mib": size, "csv_bytes": csv_bytes, "rows": generated["rows"], "days": args.days,
                            "tools": rows})

        # The table.
        print(f"\nCSV on S3 -> Parquet (zstd) on S3 partitioned by pickup day (local s3s-fs), {os.cpu_count()} cores; "
              f"one run each; 'ours vs' = our MiB/s / theirs; load average {load_start:.1f} at the start, "
              f"{os.getloadavg()[0]:.1f} at the end")
        print(f"DuckDB I/O: {duckdb_io}")
        header = (f"{'':10}{'':20}{'MiB/s':>8}{'wall s':>9}{'CPU s':>8}{'peak RSS':>13}{'output':>12}"
                  f"{'ours vs':>9}{'RSS vs ours':>13}")
        print(header)
        for res in results:
            ours = res["tools"]["ours"]
            for tool, r in res["tools"].items():
                label = LABELS[tool] + (" *" if tool == "duckdb" and not duckdb_s3 else "")
                print(f"{str(res['size_mib']) + ' MiB':10}{label:20}{r['mib_per_s']:8.1f}{r['wall_s']:9.2f}"
                      f"{r['cpu_s']:8.2f}{r['peak_rss_mib']:9.1f} MiB{r['output_bytes'] / MIB:8.1f} MiB"
                      f"{ours['mib_per_s'] / r['mib_per_s']:8.2f}x{r['peak_rss_mib'] / ours['peak_rss_mib']:12.2f}x")
        if "duckdb" in tools and not duckdb_s3:
            print("  * DuckDB wrote to local disk, not S3 (httpfs unavailable offline): an advantage for DuckDB")

        small, large = results[0], results[-1]
        checks = []
        if "pyarrow" in tools:
            for res in results:
                o, p = res["tools"]["ours"], res["tools"]["pyarrow"]
                checks.append({"what": f"throughput >= pyarrow's ({res['size_mib']} MiB)",
                               "ok": o["mib_per_s"] >= p["mib_per_s"],
                               "figure": f"{o['mib_per_s'] / p['mib_per_s']:.2f}x"})
        checks.append({"what": f"peak RSS < {RSS_LIMIT_MIB} MiB ({large['size_mib']} MiB input)",
                       "ok": large["tools"]["ours"]["peak_rss_mib"] < RSS_LIMIT_MIB,
                       "figure": f"{large['tools']['ours']['peak_rss_mib']:.1f} MiB"})
        if len(results) > 1:
            growth = large["tools"]["ours"]["peak_rss_mib"] / small["tools"]["ours"]["peak_rss_mib"]
            checks.append({"what": f"peak RSS ({large['size_mib']} MiB) <= {RSS_GROWTH} x peak RSS ({small['size_mib']} MiB)",
                           "ok": growth <= RSS_GROWTH, "figure": f"{growth:.2f}x"})
        aims = []
        peers = [t for t in tools if t != "ours"]
        if peers:
            fastest = max(peers, key=lambda t: large["tools"][t]["mib_per_s"])
            ratio = large["tools"]["ours"]["mib_per_s"] / large["tools"][fastest]["mib_per_s"]
            aims.append({"what": f"throughput >= 1.5x the fastest peer ({LABELS[fastest]}, {large['size_mib']} MiB)",
                         "ok": ratio >= 1.5, "figure": f"{ratio:.2f}x"})
        if "pyarrow" in tools:
            o, p = large["tools"]["ours"]["output_bytes"], large["tools"]["pyarrow"]["output_bytes"]
            aims.append({"what": f"output no larger than pyarrow's ({large['size_mib']} MiB)", "ok": o <= p,
                         "figure": f"{o / p:.2f}x"})
        print("targets (issue):")
        for c in checks:
            print(f"  {'met   ' if c['ok'] else 'MISSED'} {c['what']}: {c['figure']}")
        print("aims (design brief):")
        for c in aims:
            print(f"  {'met   ' if c['ok'] else 'MISSED'} {c['what']}: {c['figure']}")

        if args.json:
            import duckdb
            import polars
            doc = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "seed": args.seed, "days": args.days, "compression": "zstd",
                   "partition_by": "tpep_pickup_datetime:day", "store": "local-s3 (s3s-fs) on 127.0.0.1",
                   "loadavg": [round(load_start, 2), round(os.getloadavg()[0], 2)], "duckdb_s3": duckdb_s3, "duckdb_io": duckdb_io, "tools": tools, "labels": LABELS,
                   "versions": {"python": platform.python_version(), "pyarrow": pa.__version__,
                                "duckdb": duckdb.__version__, "polars": polars.__version__},
                   "sizes": results, "checks": checks, "aims": aims}
            with open(args.json, "w") as f:
                json.dump(doc, f, indent=1)
    finally:
        if s3_proc is not None:
            s3_proc.terminate()
            try:
                s3_proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                s3_proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
