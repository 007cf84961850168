"""Benchmark: parquet-converter against the tools people use today, in one run, on one machine,
on two S3 stores and with two Parquet codecs.

A generated NYC-taxi-like CSV (gen-taxi, fixed seed, no bad rows) of each size is put into each
local S3 store under raw/taxi/, then converted to Parquet partitioned by the pickup day
(year=/month=/day=), S3 to S3, once per codec (zstd, snappy) and repeat, by:

  parquet-converter  our Lambda handler, through examples/convert.rs (PARTITION_BY=tpep_pickup_datetime:day,
                     COMPRESSION=<codec>, AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1769: the memory Lambda gives
                     one vCPU's worth of, so its memory budget is the one such a function has)
  pyarrow            pyarrow.csv.open_csv streaming from pyarrow.fs.S3FileSystem (use_threads, 4 MiB
                     blocks through a 4 MiB read buffer: 1 MiB GETs wait on each request's latency),
                     year/month/day columns added per batch, pyarrow.dataset.write_dataset(hive
                     partitioning, use_threads) to S3, row groups of at least 65,536 rows (its
                     default, a row group per batch and partition, writes files twice the size)
  DuckDB             COPY (SELECT *, year(..), month(..), day(..) FROM read_csv('s3://..')) TO 's3://..'
                     (FORMAT parquet, PARTITION_BY (year, month, day), COMPRESSION <codec>); threads =
                     cores (its default); httpfs comes from PyPI (duckdb-extension-httpfs), loaded from
                     its file: no download at run time
  Polars             scan_csv('s3://..') -> sink_parquet(PartitionBy(key=[year, month, day])) on its
                     streaming engine (engine="streaming"; its defaults use every core)

Every tool writes the same codec: with zstd, every one at level 3 (ours' level; pyarrow's default
would be 1, DuckDB's and Polars' are 3), so each does the same compression work per byte. The
peers are given the table's schema (timestamps in microseconds, like ours), which spares them type
inference; ours infers the types itself.

The stores (bench/stores.py), one at a time, each alone with the clients on the machine's cores:
  s3s-fs     `local-s3` of the tests crate; its GETs stream the file in 4 KiB reads and its
             CompleteMultipartUpload re-reads and MD5-hashes the whole object
  seaweedfs  `weed server -s3`, started by scripts/seaweedfs.sh

Every command runs as its own process under /usr/bin/time: wall seconds, CPU seconds and peak
RSS are the operating system's figures. The store server's CPU seconds during each command
(/proc/<pid>/stat before and after) and the CPU the rest of the machine spent meanwhile
(/proc/stat busy time minus the tool's and the server's) are recorded beside them; neither is in
the tool's figures. Each store is also probed with plain requests (a streamed GET, sequential
1 MiB range GETs, single PUTs and a multipart upload of an output-sized object) to show what its
requests cost. On the first store and codec, ours and the fastest peer run once more on the
largest size with one core held by a spinning process: what each loses when other work takes a
core. Medians of the repeats are reported, each run's figures kept in the JSON.

Every tool's output (its first run's, per store, codec and size) is read back through S3 with
pyarrow: rows, partitions, every row in the partition of its own pickup day, and per partition
the row count and the sum of total_amount (in cents, exactly) equal to ours'. Ours' per-partition figures are written to the JSON; --baseline compares
them with an earlier run's. Run with scripts/bench.sh converter.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from stores import KEY_ID, SECRET, machine_busy_s, process_cpu_s, s3_client, seaweedfs_pid, start_seaweedfs

MIB = 1024 * 1024
BUCKET = "bench"
SEED = 20261123
MEMORY_SIZE_MB = 1769
ZSTD_LEVEL = 3

# The targets, on the largest size, against the best peer of the same store and codec.
VS_BEST_PEER = 1.5
CPU_VS_BEST_PEER = 1.3
RSS_VS_LOWEST_PEER = 0.5
RSS_GROWTH = 1.3

TOOLS = ["ours", "pyarrow", "duckdb", "polars"]
LABELS = {"ours": "parquet-converter", "pyarrow": "pyarrow", "duckdb": "DuckDB", "polars": "Polars"}
STORES = {"s3s-fs": "local-s3 (s3s-fs) on 127.0.0.1", "seaweedfs": "SeaweedFS (weed server -s3) on 127.0.0.1"}
CODECS = ["zstd", "snappy"]

# The generated table's columns (tests/src/data/taxi.rs) and the types the peers are told.
SCHEMA = [
    ("VendorID", "int64"), ("tpep_pickup_datetime", "timestamp"), ("tpep_dropoff_datetime", "timestamp"),
    ("passenger_count", "int64"), ("trip_distance", "float64"), ("RatecodeID", "int64"),
    ("store_and_fwd_flag", "string"), ("PULocationID", "int64"), ("DOLocationID", "int64"),
    ("payment_type", "int64"), ("fare_amount", "float64"), ("extra", "float64"), ("mta_tax", "float64"),
    ("tip_amount", "float64"), ("tolls_amount", "float64"), ("improvement_surcharge", "float64"),
    ("total_amount", "float64"), ("congestion_surcharge", "float64"),
]

# What each peer is given, for the report.
PEER_SETTINGS = {
    "ours": f"COMPRESSION=<codec> (zstd level {ZSTD_LEVEL}), AWS_LAMBDA_FUNCTION_MEMORY_SIZE={MEMORY_SIZE_MB}; types inferred",
    "pyarrow": "`csv.open_csv` (use_threads, 4 MiB blocks, 4 MiB read buffer) + `dataset.write_dataset` "
               "(hive, use_threads, `min_rows_per_group=65536`)",
    "duckdb": "`COPY ... (FORMAT parquet, PARTITION_BY (year, month, day))`, threads = cores (default)",
    "polars": "`scan_csv` + `sink_parquet(PartitionBy(...), engine=\"streaming\")`, all cores (default)",
}

# Each peer is a Python program run as its own process:
#   argv: endpoint host:port, source key, destination prefix, schema JSON, codec, [local output folder]
PEER_COMMON = r"""
import json, sys
endpoint, src, dst, schema, codec = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), sys.argv[5]
KEY_ID, SECRET, BUCKET, ZSTD_LEVEL = %r, %r, %r, %d
level = ZSTD_LEVEL if codec == "zstd" else None
""" % (KEY_ID, SECRET, BUCKET, ZSTD_LEVEL)

PYARROW = PEER_COMMON + r"""
import pyarrow as pa, pyarrow.csv as csv, pyarrow.compute as pc, pyarrow.dataset as ds, pyarrow.fs as pafs
types = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(), "timestamp": pa.timestamp("us")}
s3 = pafs.S3FileSystem(access_key=KEY_ID, secret_key=SECRET, region="us-east-1",
                       endpoint_override=endpoint, scheme="http")
block = 4 << 20
reader = csv.open_csv(s3.open_input_stream(f"{BUCKET}/{src}", buffer_size=block),
                      read_options=csv.ReadOptions(use_threads=True, block_size=block),
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
                 file_options=ds.ParquetFileFormat().make_write_options(compression=codec, compression_level=level),
                 existing_data_behavior="overwrite_or_ignore", use_threads=True,
                 # The default writes a row group per incoming batch and partition (a few hundred rows
                 # here), doubling the file size: this is what a user tunes first.
                 min_rows_per_group=65536, max_rows_per_group=1048576)
"""

DUCKDB = PEER_COMMON + r"""
import os, duckdb, duckdb_extension_httpfs
local_out = sys.argv[6] if len(sys.argv) > 6 else ""
types = {"int64": "BIGINT", "float64": "DOUBLE", "string": "VARCHAR", "timestamp": "TIMESTAMP"}
columns = "{" + ", ".join(f"'{n}': '{types[t]}'" for n, t in schema) + "}"
con = duckdb.connect()
ts = "tpep_pickup_datetime"
select = f"SELECT *, year({ts}) AS year, month({ts}) AS month, day({ts}) AS day FROM {{source}}"
options = f"FORMAT parquet, PARTITION_BY (year, month, day), COMPRESSION {codec}, OVERWRITE_OR_IGNORE"
if level is not None:
    options += f", COMPRESSION_LEVEL {level}"
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
                 compression=codec, compression_level=level, storage_options=opts, engine="streaming"))
"""


def timed(cmd, env, server_pid):
    """Runs cmd under /usr/bin/time; returns its figures (wall s, CPU s, peak RSS MiB, the store
    server's CPU s and the rest of the machine's CPU s meanwhile) and its stdout."""
    out = tempfile.NamedTemporaryFile(delete=False)
    out.close()
    full = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", out.name] + cmd
    server0, busy0 = process_cpu_s(server_pid), machine_busy_s()
    try:
        proc = subprocess.run(full, env=env, capture_output=True, text=True)
        server1, busy1 = process_cpu_s(server_pid), machine_busy_s()
        with open(out.name) as f:
            lines = [l for l in f.read().splitlines() if l.strip()]
    finally:
        os.unlink(out.name)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} {' '.join(cmd[1:2])} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    wall, user, sys_, rss_kb = lines[-1].split()
    cpu, server = float(user) + float(sys_), server1 - server0
    return {"wall_s": float(wall), "cpu_s": cpu, "peak_rss_mib": int(rss_kb) / 1024,
            "server_cpu_s": round(server, 2), "other_cpu_s": round(max(0.0, busy1 - busy0 - cpu - server), 2)}, \
        proc.stdout


def s3_filesystem(hostport):
    return pafs.S3FileSystem(access_key=KEY_ID, secret_key=SECRET, region="us-east-1",
                             endpoint_override=hostport, scheme="http")


def check_output(fs, base):
    """Reads a Hive-partitioned output back with pyarrow from fs (S3 or local) under base: rows,
    partitions, files, bytes, misplaced rows, and rows and sum(total_amount) per partition."""
    infos = [i for i in fs.get_file_info(pafs.FileSelector(base, recursive=True))
             if i.type == pafs.FileType.File and i.path.endswith(".parquet")]
    if not infos:
        raise RuntimeError(f"no Parquet files under {base}")
    files = sorted(i.path for i in infos)
    dataset = ds.dataset(files, format="parquet", filesystem=fs, partition_base_dir=base,
                         partitioning=ds.partitioning(pa.schema([("year", pa.int32()), ("month", pa.int32()),
                                                                 ("day", pa.int32())]), flavor="hive"))
    table = dataset.to_table(columns=["tpep_pickup_datetime", "total_amount", "year", "month", "day"])
    t = table.column("tpep_pickup_datetime")
    misplaced = 0
    for part, fn in (("year", pc.year), ("month", pc.month), ("day", pc.day)):
        misplaced += pc.sum(pc.cast(pc.not_equal(fn(t), pc.cast(table.column(part), pa.int64())), pa.int64())).as_py() or 0
    # total_amount has two decimals: summed in integer cents, the sums compare exactly whatever
    # the order the rows were written in.
    cents = pc.cast(pc.round(pc.multiply(table.column("total_amount"), 100.0)), pa.int64())
    grouped = pa.table({"year": table.column("year"), "month": table.column("month"), "day": table.column("day"),
                        "cents": cents}).group_by(["year", "month", "day"]).aggregate(
        [("cents", "sum"), ("cents", "count", pc.CountOptions(mode="all"))])
    partitions = {f"year={y}/month={m}/day={d}": {"rows": n, "total_amount_cents": c}
                  for y, m, d, c, n in zip(*(grouped.column(k).to_pylist() for k in
                                             ("year", "month", "day", "cents_sum", "cents_count")))}
    return {"rows": table.num_rows, "partitions": len(partitions), "files": len(files),
            "output_bytes": sum(i.size for i in infos), "misplaced_rows": misplaced,
            "total_amount_sum": round(sum(p["total_amount_cents"] for p in partitions.values()) / 100, 2),
            "timestamp_type": str(dataset.schema.field("tpep_pickup_datetime").type)}, dict(sorted(partitions.items()))


def list_output(fs, base):
    """Files and bytes of the Parquet files under base."""
    infos = [i for i in fs.get_file_info(pafs.FileSelector(base, recursive=True))
             if i.type == pafs.FileType.File and i.path.endswith(".parquet")]
    return {"files": len(infos), "output_bytes": sum(i.size for i in infos)}


def delete_prefix(s3, prefix):
    """Deletes every object under bench/prefix through S3."""
    while True:
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        if not listed:
            return
        s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": o["Key"]} for o in listed], "Quiet": True})


def probe_store(s3, key, size, server_pid):
    """What the store's requests cost: a streamed GET of the CSV, sequential 1 MiB range GETs of
    it, and an output-sized object (6 MiB) written with single PUTs and as a multipart upload;
    wall and server CPU seconds for each."""
    def measure(fn):
        s0, t0 = process_cpu_s(server_pid), time.perf_counter()
        n = fn()
        return time.perf_counter() - t0, process_cpu_s(server_pid) - s0, n

    def full_get():
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"]
        return sum(len(b) for b in body.iter_chunks(4 * MIB))

    span = min(size, 128 * MIB)

    def range_gets():
        n = 0
        for off in range(0, span, MIB):
            n += len(s3.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={off}-{off + MIB - 1}")["Body"].read())
        return n // MIB

    obj = os.urandom(6 * MIB)
    puts = 16

    def single_puts():
        for i in range(puts):
            s3.put_object(Bucket=BUCKET, Key=f"probe/put-{i}.bin", Body=obj)
        return puts

    def multipart():
        times = []
        for i in range(puts):
            k = f"probe/mpu-{i}.bin"
            up = s3.create_multipart_upload(Bucket=BUCKET, Key=k)["UploadId"]
            parts = []
            for n, off in enumerate(range(0, len(obj), 5 * MIB), 1):
                e = s3.upload_part(Bucket=BUCKET, Key=k, UploadId=up, PartNumber=n, Body=obj[off:off + 5 * MIB])
                parts.append({"PartNumber": n, "ETag": e["ETag"]})
            t0 = time.perf_counter()
            s3.complete_multipart_upload(Bucket=BUCKET, Key=k, UploadId=up, MultipartUpload={"Parts": parts})
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    wall, server, got = measure(full_get)
    get = {"mib": got / MIB, "wall_s": round(wall, 3), "server_cpu_s": round(server, 3),
           "mib_per_s": round(got / MIB / wall, 1), "server_cpu_s_per_gib": round(server / (got / MIB) * 1024, 2)}
    wall, server, n = measure(range_gets)
    rng = {"requests": n, "wall_s": round(wall, 3), "server_cpu_s": round(server, 3),
           "mib_per_s": round(n / wall, 1), "ms_per_request": round(wall / n * 1000, 2),
           "server_cpu_s_per_gib": round(server / n * 1024, 2)}
    wall, server, n = measure(single_puts)
    put = {"objects": n, "object_mib": 6, "wall_s": round(wall, 3), "ms_per_object": round(wall / n * 1000, 1),
           "server_cpu_s_per_gib": round(server / (n * 6) * 1024, 2)}
    wall, server, complete = measure(multipart)
    mpu = {"objects": puts, "object_mib": 6, "part_mib": 5, "wall_s": round(wall, 3),
           "ms_per_object": round(wall / puts * 1000, 1), "complete_ms": round(complete * 1000, 1),
           "server_cpu_s_per_gib": round(server / (puts * 6) * 1024, 2)}
    delete_prefix(s3, "probe/")
    return {"get": get, "range_get_1mib": rng, "put_6mib": put, "multipart_6mib": mpu}


def median_run(runs):
    """The median of each figure over the repeats; each run kept under "runs"."""
    keys = ["wall_s", "cpu_s", "peak_rss_mib", "server_cpu_s", "other_cpu_s"]
    r = {k: round(statistics.median(run[k] for run in runs), 3) for k in keys}
    r["runs"] = runs
    return r


def targets_for(results, peers):
    """The issue's targets for one store and codec, on the largest size, against its best peers."""
    small, large = results[0], results[-1]
    o = large["tools"]["ours"]
    size = f"{large['size_mib']} MiB"
    checks = []
    if peers:
        best = max(peers, key=lambda t: large["tools"][t]["mib_per_s"])
        ratio = o["mib_per_s"] / large["tools"][best]["mib_per_s"]
        checks.append({"what": f"throughput >= {VS_BEST_PEER}x the fastest peer ({LABELS[best]}, {size})",
                       "ok": ratio >= VS_BEST_PEER, "figure": f"{ratio:.2f}x ({o['mib_per_s']:.1f} vs "
                                                             f"{large['tools'][best]['mib_per_s']:.1f} MiB/s)"})
        cheap = max(peers, key=lambda t: large["tools"][t]["mib_per_cpu_s"])
        ratio = o["mib_per_cpu_s"] / large["tools"][cheap]["mib_per_cpu_s"]
        checks.append({"what": f"MiB per CPU-s >= {CPU_VS_BEST_PEER}x the best peer's ({LABELS[cheap]}, {size})",
                       "ok": ratio >= CPU_VS_BEST_PEER,
                       "figure": f"{ratio:.2f}x ({o['mib_per_cpu_s']:.1f} vs {large['tools'][cheap]['mib_per_cpu_s']:.1f})"})
        lean = min(peers, key=lambda t: large["tools"][t]["peak_rss_mib"])
        limit = RSS_VS_LOWEST_PEER * large["tools"][lean]["peak_rss_mib"]
        checks.append({"what": f"peak RSS <= {RSS_VS_LOWEST_PEER}x the lowest peer's ({LABELS[lean]}, {size})",
                       "ok": o["peak_rss_mib"] <= limit,
                       "figure": f"{o['peak_rss_mib']:.0f} MiB vs limit {limit:.0f} MiB"})
    if len(results) > 1:
        growth = o["peak_rss_mib"] / small["tools"]["ours"]["peak_rss_mib"]
        checks.append({"what": f"peak RSS ({size}) <= {RSS_GROWTH}x peak RSS ({small['size_mib']} MiB)",
                       "ok": growth <= RSS_GROWTH, "figure": f"{growth:.2f}x"})
    if "pyarrow" in peers:
        ob, pb = o["output_bytes"], large["tools"]["pyarrow"]["output_bytes"]
        checks.append({"what": f"output no larger than pyarrow's ({size})", "ok": ob <= pb,
                       "figure": f"{ob / pb:.3f}x ({ob / MIB:.2f} vs {pb / MIB:.2f} MiB)"})
    return checks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes-mib", "--sizes-mb", default="100,1024",
                    help="CSV sizes in MiB, comma-separated (the targets compare the smallest and largest)")
    ap.add_argument("--stores", default="s3s-fs,seaweedfs", help="comma-separated: " + ", ".join(STORES))
    ap.add_argument("--codecs", default="zstd,snappy", help="comma-separated: " + ", ".join(CODECS))
    ap.add_argument("--repeats", type=int, default=3, help="runs of every tool on the largest size (medians reported)")
    ap.add_argument("--repeats-small", type=int, help="runs on the smaller sizes (default: --repeats)")
    ap.add_argument("--days", type=int, default=31, help="pickup days, hence partitions")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--tools", default=",".join(TOOLS), help="subset of " + ",".join(TOOLS))
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--no-loaded-run", dest="loaded_run", action="store_false",
                    help="skip the runs of ours and the fastest peer with one core held by another process")
    ap.add_argument("--baseline", help="an earlier converter.json: ours' per-partition rows and sums must match it "
                                       "for every size both runs have")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes_mib.split(",") if s.strip()]
    stores = [s for s in args.stores.split(",") if s]
    codecs = [c for c in args.codecs.split(",") if c]
    tools = [t for t in args.tools.split(",") if t]
    unknown = (set(tools) - set(TOOLS)) | (set(stores) - set(STORES)) | (set(codecs) - set(CODECS))
    if unknown or "ours" not in tools:
        sys.exit(f"unknown {sorted(unknown)}" if unknown else "--tools must include ours")
    peers = [t for t in tools if t != "ours"]
    repeats = {s: (args.repeats if s == max(sizes) else (args.repeats_small or args.repeats)) for s in sizes}
    baseline = None
    if args.baseline:
        with open(args.baseline) as f:
            baseline = json.load(f).get("ours_partitions", {})

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    load_start = os.getloadavg()[0]
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="tributary-convert-bench-")
    stoppers = []
    try:
        # Snapshot the binaries: a build into the same target directory during the run must not
        # swap them between the sizes.
        bins = os.path.join(work, "bin")
        os.makedirs(bins)
        for rel in ("local-s3", "gen-taxi", os.path.join("examples", "convert")):
            shutil.copy2(os.path.join(args.bin_dir, rel), os.path.join(bins, os.path.basename(rel)))

        env = dict(os.environ, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1", AWS_EC2_METADATA_DISABLED="true",
                   AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1")
        for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "COMPRESSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"):
            env.pop(k, None)
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

        # The CSVs, generated once and put into every store.
        generated = {}
        for size in sizes:
            csv_path = os.path.join(work, f"taxi-{size}mib.csv")
            gen = subprocess.run([os.path.join(bins, "gen-taxi"), csv_path, "--bytes", str(size * MIB),
                                  "--seed", str(args.seed), "--days", str(args.days)],
                                 capture_output=True, text=True, check=True)
            g = json.loads(gen.stdout.strip().splitlines()[-1])
            assert g["bad_rows"] == 0, g
            generated[size] = {"path": csv_path, "rows": g["rows"], "csv_bytes": os.path.getsize(csv_path)}

        doc_stores = {}
        ours_partitions = {}
        problems = []
        for store in stores:
            if store == "seaweedfs":
                home = os.path.join(work, "seaweedfs")
                endpoint, stop = start_seaweedfs(root, home)
                stoppers.append(stop)
                server_pid = seaweedfs_pid(home)
            else:
                s3_dir = os.path.join(work, "s3")
                shutil.rmtree(s3_dir, ignore_errors=True)
                os.makedirs(s3_dir)
                proc = subprocess.Popen([os.path.join(bins, "local-s3"), s3_dir, "0", BUCKET],
                                        stdout=subprocess.PIPE, text=True)
                first = proc.stdout.readline().strip()
                if not first.startswith("endpoint="):
                    raise RuntimeError(f"local-s3 did not start: {first!r}")
                endpoint = first.split("=", 1)[1]

                def stop(proc=proc):
                    if proc.poll() is None:
                        proc.terminate()
                        try:
                            proc.wait(timeout=5)
                        except subprocess.TimeoutExpired:
                            proc.kill()
                stoppers.append(stop)
                server_pid = proc.pid
            hostport = endpoint.split("://", 1)[1].rstrip("/")
            s3 = s3_client(endpoint)
            fs = s3_filesystem(hostport)
            ours_env = dict(env, AWS_ENDPOINT_URL_S3=endpoint, S3_FORCE_PATH_STYLE="true",
                            PARTITION_BY="tpep_pickup_datetime:day", RUST_LOG="warn",
                            AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(MEMORY_SIZE_MB))
            per_codec = {c: [] for c in codecs}
            probes = None
            for size in sizes:
                g = generated[size]
                key = f"raw/taxi/taxi-{size}mib.csv"
                # One PutObject with a binary content type (stores may compress what looks like text).
                with open(g["path"], "rb") as f:
                    s3.put_object(Bucket=BUCKET, Key=key, Body=f, ContentType="application/octet-stream")
                csv_mib = g["csv_bytes"] / MIB
                if size == max(sizes):
                    probes = probe_store(s3, key, g["csv_bytes"], server_pid)
                    print(f"\n{store}: streamed GET {probes['get']['mib_per_s']} MiB/s "
                          f"({probes['get']['server_cpu_s_per_gib']} server CPU-s/GiB); 1 MiB range GETs "
                          f"{probes['range_get_1mib']['ms_per_request']} ms each "
                          f"({probes['range_get_1mib']['server_cpu_s_per_gib']} server CPU-s/GiB); "
                          f"6 MiB PUT {probes['put_6mib']['ms_per_object']} ms, multipart "
                          f"{probes['multipart_6mib']['ms_per_object']} ms (complete "
                          f"{probes['multipart_6mib']['complete_ms']} ms)", flush=True)
                for codec in codecs:
                    print(f"\n{store}, {codec}, {size} MiB: {g['rows']:,} rows over {args.days} days, "
                          f"{g['csv_bytes']:,} bytes, {repeats[size]} run(s) each", flush=True)
                    runs = {t: [] for t in tools}
                    checked = {}
                    def run_tool(tool, check=True):
                        """Runs one tool, checks its output (or only lists it), deletes it; returns
                        (figures, check or None)."""
                        dst = f"processed-{tool}/taxi"
                        fs_out, base = fs, f"{BUCKET}/{dst}"
                        if tool == "ours":
                            cmd, e = [os.path.join(bins, "convert"), f"s3://{BUCKET}/{key}"], \
                                dict(ours_env, COMPRESSION=codec)
                            dst, base = "processed/", f"{BUCKET}/processed/taxi"
                        else:
                            program = {"pyarrow": PYARROW, "duckdb": DUCKDB, "polars": POLARS}[tool]
                            cmd, e = [sys.executable, "-c", program, hostport, key, dst, schema_json, codec], env
                            if tool == "duckdb" and not duckdb_s3:
                                fs_out, base = pafs.LocalFileSystem(), os.path.join(work, "local", "duckdb")
                                os.makedirs(os.path.dirname(base), exist_ok=True)
                                cmd.append(base)
                        r, out = timed(cmd, e, server_pid)
                        r["mib_per_s"] = round(csv_mib / r["wall_s"], 2)
                        if tool == "ours":
                            resp = json.loads(out.strip().splitlines()[-1])  # metrics lines may come first
                            results_ = resp.get("results") or [{}]
                            if results_[0].get("status") != "converted":
                                raise RuntimeError(f"the converter did not convert: {resp}")
                            r["response_rows"] = results_[0].get("rows")
                        c, parts = check_output(fs_out, base) if check else (list_output(fs_out, base), None)
                        r.update({k: c[k] for k in ("output_bytes", "files")})
                        # Keep the store small: outputs are deleted once checked.
                        if fs_out is fs:
                            delete_prefix(s3, dst)
                        else:
                            shutil.rmtree(base, ignore_errors=True)
                        return r, (c, parts)

                    for rep in range(repeats[size]):
                        # The tools take turns within each repeat, so drift in the machine's load
                        # reaches all of them alike.
                        for tool in tools:
                            # A tool's output is read back and checked in full after its first run;
                            # later runs write the same and are only listed (files, bytes).
                            r, (c, parts) = run_tool(tool, check=rep == 0)
                            if rep == 0:
                                checked[tool] = (c, parts)
                            runs[tool].append(r)
                            print(f"  {LABELS[tool]:18} {r['mib_per_s']:7.1f} MiB/s  {r['wall_s']:7.2f} s  "
                                  f"{r['cpu_s']:7.2f} CPU s  {r['peak_rss_mib']:7.1f} MiB peak  server "
                                  f"{r['server_cpu_s']:5.2f} CPU s  others {r['other_cpu_s']:5.2f} CPU s  "
                                  + (f"{c['rows']:,} rows in {c['partitions']} partitions, " if rep == 0 else "")
                                  + f"{c['files']} files, {c['output_bytes'] / MIB:.1f} MiB", flush=True)
                    loaded = {}
                    if args.loaded_run and size == max(sizes) and codec == codecs[0] and store == stores[0]:
                        # Ours and the fastest peer once more each, with one core held by a spinning
                        # process: how much each loses when other work takes a core.
                        fastest = max(peers, key=lambda t: statistics.median(x["mib_per_s"] for x in runs[t]),
                                      default=None)
                        for tool in ["ours"] + ([fastest] if fastest else []):
                            spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                            try:
                                r, _ = run_tool(tool)
                            finally:
                                spin.kill()
                                spin.wait()
                            r["mib_per_s"] = round(csv_mib / r["wall_s"], 2)
                            loaded[tool] = r
                            print(f"  {LABELS[tool]:18} {r['mib_per_s']:7.1f} MiB/s  {r['wall_s']:7.2f} s  "
                                  f"{r['cpu_s']:7.2f} CPU s with one core held by another process", flush=True)
                    rows = {}
                    for tool in tools:
                        r = median_run(runs[tool])
                        c, parts = checked[tool]
                        r.update({k: v for k, v in c.items() if k not in ("output_bytes", "files")})
                        r["output_bytes"] = int(statistics.median(x["output_bytes"] for x in runs[tool]))
                        r["files"] = runs[tool][0]["files"]
                        r["mib_per_s"] = round(csv_mib / r["wall_s"], 2)
                        r["mib_per_cpu_s"] = round(csv_mib / r["cpu_s"], 2)
                        r["response_rows"] = runs[tool][-1].get("response_rows")
                        r["partition_figures"] = parts
                        rows[tool] = r
                    ours, ours_parts = rows["ours"], rows["ours"]["partition_figures"]
                    where = f"{store}, {codec}, {size} MiB"
                    if ours["rows"] != g["rows"] or ours.get("response_rows") != g["rows"]:
                        problems.append(f"{where}: ours wrote {ours['rows']} rows (response says "
                                        f"{ours.get('response_rows')}), generated {g['rows']}")
                    if ours["partitions"] != args.days:
                        problems.append(f"{where}: ours wrote {ours['partitions']} partitions, expected {args.days}")
                    for tool, r in rows.items():
                        if r["misplaced_rows"]:
                            problems.append(f"{where}: {tool}: {r['misplaced_rows']} rows in another day's partition")
                        if r["rows"] != g["rows"]:
                            problems.append(f"{where}: {tool}: {r['rows']} rows, generated {g['rows']}")
                        if r["partition_figures"] != ours_parts:
                            differ = sorted(p for p in set(r["partition_figures"]) | set(ours_parts)
                                            if r["partition_figures"].get(p) != ours_parts.get(p))
                            problems.append(f"{where}: {tool}: rows or sum(total_amount) differ from ours in "
                                            f"{len(differ)} partitions, e.g. {differ[:3]}")
                    seen = ours_partitions.setdefault(str(size), ours_parts)
                    if seen != ours_parts:
                        problems.append(f"{where}: ours' partitions differ from its run on another store or codec")
                    for r in rows.values():
                        del r["partition_figures"]
                    per_codec[codec].append({"size_mib": size, "csv_bytes": g["csv_bytes"], "rows": g["rows"],
                                             "days": args.days, "repeats": repeats[size], "tools": rows})
                    if loaded:
                        per_codec[codec][-1]["one_core_taken"] = loaded
                s3.delete_object(Bucket=BUCKET, Key=key)
            stop()
            doc_stores[store] = {"label": STORES[store], "probes": probes,
                                 "codecs": {c: {"sizes": res, "targets": targets_for(res, peers)}
                                            for c, res in per_codec.items()}}

        if baseline:
            for size, parts in ours_partitions.items():
                if size in baseline and baseline[size] != parts:
                    problems.append(f"{size} MiB: ours' per-partition rows or sums differ from the baseline's")
        if problems:
            raise RuntimeError("output check failed:\n  " + "\n  ".join(problems))

        # The tables.
        load_end = os.getloadavg()[0]
        print(f"\nCSV on S3 -> partitioned Parquet on S3, {os.cpu_count()} cores; medians; 'ours vs' = our MiB/s / "
              f"theirs; load average {load_start:.1f} at the start, {load_end:.1f} at the end; "
              f"{time.monotonic() - started:.0f} s in all")
        print(f"DuckDB I/O: {duckdb_io}")
        for store, sd in doc_stores.items():
            for codec, cd in sd["codecs"].items():
                print(f"\n{store}, {codec}")
                print(f"{'':10}{'':20}{'MiB/s':>8}{'wall s':>9}{'CPU s':>8}{'MiB/CPU-s':>10}{'peak RSS':>13}"
                      f"{'output':>12}{'server CPU':>11}{'ours vs':>9}")
                for res in cd["sizes"]:
                    ours = res["tools"]["ours"]
                    for tool, r in res["tools"].items():
                        print(f"{str(res['size_mib']) + ' MiB':10}{LABELS[tool]:20}{r['mib_per_s']:8.1f}"
                              f"{r['wall_s']:9.2f}{r['cpu_s']:8.2f}{r['mib_per_cpu_s']:10.1f}"
                              f"{r['peak_rss_mib']:9.1f} MiB{r['output_bytes'] / MIB:8.1f} MiB"
                              f"{r['server_cpu_s']:9.2f} s{ours['mib_per_s'] / r['mib_per_s']:8.2f}x")
                for c in cd["targets"]:
                    print(f"  {'met   ' if c['ok'] else 'MISSED'} {c['what']}: {c['figure']}")

        if args.json:
            import duckdb
            import polars
            doc = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "seed": args.seed, "days": args.days, "partition_by": "tpep_pickup_datetime:day",
                   "memory_size_mb": MEMORY_SIZE_MB, "zstd_level": ZSTD_LEVEL, "cores": os.cpu_count(),
                   "loadavg": [round(load_start, 2), round(load_end, 2)],
                   "seconds": round(time.monotonic() - started), "sizes_mib": sizes, "repeats": repeats,
                   "duckdb_s3": duckdb_s3, "duckdb_io": duckdb_io, "tools": tools, "labels": LABELS,
                   "peer_settings": {t: PEER_SETTINGS[t] for t in tools},
                   "versions": {"python": platform.python_version(), "pyarrow": pa.__version__,
                                "duckdb": duckdb.__version__, "polars": polars.__version__},
                   "stores": doc_stores, "ours_partitions": ours_partitions}
            with open(args.json, "w") as f:
                json.dump(doc, f, indent=1)
    finally:
        for stop in stoppers:
            stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
