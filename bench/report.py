"""Writes BENCHMARKS.md and bench/results/chart.png from the JSON the benchmarks left in
bench/results/ (firehose.json, ingester.json, converter.json). Run by scripts/bench.sh (all or
report); everything in BENCHMARKS.md comes from here, none of it is written by hand.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess

MIB = 1024 * 1024
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# The issues' targets and the design brief's aims, as the benchmarks check them.
COLD_START_AIM_MS = 30
INGEST_CEILING_SHARE = 0.8
INGEST_VS_BOTO3 = 1.5
INGEST_AIM_VS_BOTO3 = 1.3
OURS_COLOR, PEER_COLOR, CEILING_COLOR = "#d95f02", "#7570b3", "#bbbbbb"


def load(results, name):
    path = os.path.join(results, name + ".json")
    if not os.path.exists(path):
        return None, None
    with open(path) as f:
        doc = json.load(f)
    when = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
    return doc, when.strftime("%Y-%m-%d %H:%M UTC")


def all_run_seconds(results):
    """(total, {stage: seconds}) of the last `scripts/bench.sh all`, or None."""
    try:
        with open(os.path.join(results, "all.seconds")) as f:
            figures = [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return None
    if len(figures) != 4:
        return None
    return figures[0], dict(zip(("firehose", "ingester", "converter"), figures[1:]))


def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = "unknown"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    return {"CPU": cpu, "cores": str(os.cpu_count()), "RAM": ram,
            "kernel": f"{platform.system()} {platform.release()}", "rustc": run(["rustc", "--version"]),
            "Python": platform.python_version(),
            "report written": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def mark(ok):
    return "met" if ok else "**MISSED**"


def fmt_s(s):
    return f"{s} s" if s < 120 else f"{s / 60:.1f} min"


# Where the firehose-transformer's CPU goes: `perf record -g` on the bench binary with
# BENCH_PROFILE=small|transform (the handler in process, one thread), before and after the change
# that introduced this paragraph; the figures are from that run (2 shared cores, a loaded machine).
FIREHOSE_PROFILE = [
    "**Profile** (`BENCH_PROFILE=small|transform perf record -g` on the bench binary, handler in process on "
    "one thread; share of CPU samples). Before: the runtime deserialised the 6 MB request into owned "
    "strings through `serde_path_to_error` (`skip_to_escape` 9.5%, `parse_str` 3.5%, path tracking 4.9%, "
    "copies 5.3%, frees 2.8%), every record was parsed into fields and written back (scanner 21%, "
    "rewriting 10.7%), the CloudWatch Logs sniff searched each record's first 512 bytes byte-window by "
    "byte-window (about 6% of the batch inside `chunk`), and the 6 MB response was validated again "
    "(`RawValue::from_string`, 1.9%) and copied once more by the runtime. Measured in one run on that "
    "machine: small-record event 25.5 ms CPU in process (1 thread), 28.8 ms CPU and 33.8 ms wall per "
    "invocation through the Runtime API; transform batch 16.8 ms CPU in process, 24.3 ms CPU and 31.8 ms "
    "wall through the runtime.",
    "",
    "Then: the binary takes the request body as it arrived and answers from the buffer the response was "
    "built in (`tributary::runtime::serve_raw`, `lambda_runtime`'s loop without its payload "
    "deserialisation or second serialisation), records are borrowed from the request, a record with "
    "nothing to change is validated and copied rather than parsed into fields and rewritten, and the "
    "sniff uses prebuilt SIMD finders. What was left on the small-record event: validating each record's "
    "JSON 38% (string scanning 16.6%) plus its UTF-8 5.5%, reading the event with serde_json 20% "
    "(scanning the base64 strings 14.6%), base64 decode 4.5% and encode 2.5%, writing record ids 4.5%; "
    "on the transform batch the same scanner 29%, base64 7%, formatting and re-parsing the per-record "
    "arrival stamp and time keys about 5%.",
    "",
    "Now: the request is read by a scanner of its own for the shape Firehose sends (serde_json reads "
    "anything else from the start, so every event and every refusal reads as before: 9.7% of the "
    "small-record event instead of 20%); JSON strings are scanned a block of bytes at a time with a "
    "vector test (short strings a word at a time first); an unchanged record answers the input's "
    "base64 text for its whole 3-byte groups instead of encoding it again; the arrival stamp and the "
    "time keys are written digit by digit into reused buffers; under 1,769 MB of function memory a "
    "batch runs on one thread. What is left, small-record event: string scanning 23%, the record "
    "validator's other steps 33%, base64 decode 6%, page zeroing of fresh buffers 6%, UTF-8 4%; "
    "transform batch: string scanning 16%, the validator's other steps 21%, base64 10%, the transform "
    "and its name comparisons 10%, writing the record back 7%, partition keys 4%. Through the Runtime "
    "API the rest is moving 6 MB each way over the loopback socket (about half of the function "
    "process's CPU is then in the kernel).",
    "",
]


def firehose_section(doc, when):
    out = ["## firehose-transformer", ""]
    if doc is None or "events" not in doc:
        return out + ["No figures (no firehose.json): `scripts/bench.sh firehose` makes them.", ""]
    out += ["Two Firehose requests, each handled in process (request body in, response body out: what the "
            "binary does with an invocation), by the release binary through a Lambda Runtime API emulator "
            "on 127.0.0.1 (wall time from queueing the event to receiving the response; CPU of the "
            "function's process, all its threads), and by the seed's Python handler on the same bytes "
            "(`json.loads` + handler + `json.dumps`, one thread, its own process, `time.process_time`). "
            "Wall: median per event; CPU: mean per event over the rounds (`/proc/<pid>/stat`). "
            f"Results from {when}.", "",
            "| event | records | request MB | handler | wall ms | CPU ms | seed CPU / this CPU |",
            "|---|---:|---:|---|---:|---:|---:|"]
    checks = []
    for ev in doc["events"]:
        seed = ev.get("seed")
        rows = [(f"ours in process, {ev['threads']} threads", ev["in_process"]),
                ("ours in process, 1 thread", ev["in_process_one_thread"]),
                ("ours through the Runtime API, 1,024 MB (1 thread)", ev.get("through_runtime")),
                ("seed Python `lambda_handler`", seed)]
        for name, c in rows:
            if c is None:
                continue
            ratio = f"{seed['cpu_ms'] / c['cpu_ms']:.1f}x" if seed else "n/a"
            out.append(f"| {ev['what']} | {ev['records']:,} | {ev['request_bytes'] / 1e6:.2f} | {name} | "
                       f"{c['wall_ms']:.2f} | {c['cpu_ms']:.2f} | {ratio} |")
        checks += [("issue", f"{ev['what']}: {t['target']}", t["met"], t["figures"]) for t in ev["targets"]]
    checks.append(("design aim", f"cold start < {COLD_START_AIM_MS} ms", doc["cold_start_ms"] < COLD_START_AIM_MS,
                   f"{doc['cold_start_ms']:.2f} ms"))
    out += ["", f"Binary {doc['binary_bytes'] / 1e6:.2f} MB stripped; cold start (process spawn to its first "
            f"Lambda Runtime API request) {doc['cold_start_ms']:.2f} ms median.", ""]
    return out + checks_table(checks) + FIREHOSE_PROFILE


def checks_table(checks):
    out = ["| source | target | result | figure |", "|---|---|---|---:|"]
    for source, what, ok, fig in checks:
        out.append(f"| {source} | {what} | {mark(ok)} | {fig} |")
    return out + [""]


def ingester_table(rows):
    ours = rows["url-ingester"]
    out = ["| | MiB/s | wall s | CPU s | peak RSS MiB | ours vs (MiB/s) |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        label = f"**{name}** (ours)" if name == "url-ingester" else name
        out.append(f"| {label} | {r['mib_per_s']:.1f} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | "
                   f"{r['peak_rss_mib']:.1f} | {ours['mib_per_s'] / r['mib_per_s']:.2f}x |")
    return out


def ingester_section(doc, when):
    out = ["## url-ingester", ""]
    if doc is None:
        return out + ["No figures (no ingester.json): `scripts/bench.sh ingester` makes them.", ""]
    rows = doc["rows"]
    ours = rows["url-ingester"]
    sinks = doc["sinks"]
    out += [f"{doc['size_mib']} MiB from a local HTTP server (127.0.0.1) into a local S3 endpoint, "
            f"part size {doc['part_mib']} MiB, concurrency {doc['concurrency']}; each tool its own process under "
            f"`/usr/bin/time`, and every stored object checked against the source's SHA-256. Results from {when}.", ""]
    out += ["The store runs on the same 2 cores as the clients, so its cost per byte shapes every figure. "
            "The targets are checked on the **lean store** (`local-s3 --lean`, `tests/src/bench_store.rs`): it "
            "writes each body once and completes a multipart upload by joining the part files in the kernel, "
            "as S3 completes one without re-reading the data. The test store **s3s-fs** re-reads and "
            "MD5-hashes the whole object on CompleteMultipartUpload (about 3 s per GiB here, while every "
            "multipart client waits); its figures follow for comparison. \"raw PUT\" is boto3's "
            "single-stream `put_object` of the file: on the lean store it measures that client more than "
            "the store.", "", "### Lean store", ""]
    out += ingester_table(sinks["lean"])
    for sink, title in (("s3s-fs", "s3s-fs store"), ("seaweedfs", "SeaweedFS store")):
        if sink in sinks:
            out += ["", f"### {title}", ""]
            if sink == "seaweedfs":
                out += ["SeaweedFS (`weed server -s3`, one S3 identity) on the same cores: it burns about 1.25 "
                        "CPU-s per 100 MB written, so read CPU seconds beside wall time. Stored objects are "
                        "checked with a GET.", ""]
            out += ingester_table(sinks[sink])
    ceiling = min(rows["curl (source ceiling)"]["mib_per_s"], rows["raw PUT (sink ceiling)"]["mib_per_s"])
    boto = rows["boto3 upload_fileobj"]
    budget = doc["part_mib"] * (doc["concurrency"] + 1) + 32
    checks = [("issue", f"throughput >= {INGEST_CEILING_SHARE}x the lower ceiling",
               ours["mib_per_s"] >= INGEST_CEILING_SHARE * ceiling, f"{ours['mib_per_s'] / ceiling:.2f}x"),
              ("issue", f"throughput >= {INGEST_VS_BOTO3}x boto3", ours["mib_per_s"] >= INGEST_VS_BOTO3 * boto["mib_per_s"],
               f"{ours['mib_per_s'] / boto['mib_per_s']:.2f}x"),
              ("issue", f"peak RSS <= part x (concurrency + 1) + 32 MiB = {budget} MiB", ours["peak_rss_mib"] <= budget,
               f"{ours['peak_rss_mib']:.1f} MiB"),
              ("design aim", "CPU seconds below boto3's", ours["cpu_s"] < boto["cpu_s"],
               f"{ours['cpu_s'] / boto['cpu_s']:.2f}x")]
    out += ["", "Checks (lean store):", ""] + checks_table(checks)
    out += [f"Peak RSS of the url-ingester against its documented bound, part x (concurrency + 1) + 32 MiB "
            f"= {budget} MiB, on every store:", ""]
    rss = [("issue", f"peak RSS <= {budget} MiB ({sink})", r["url-ingester"]["peak_rss_mib"] <= budget,
            f"{r['url-ingester']['peak_rss_mib']:.1f} MiB") for sink, r in sinks.items()]
    return out + checks_table(rss)


CONVERT_STORE_TITLES = {"s3s-fs": "s3s-fs", "seaweedfs": "SeaweedFS"}


def converter_table(res_list, labels, duckdb_s3):
    out = ["| input | tool | MiB/s | wall s | CPU s | MiB per CPU-s | peak RSS MiB | output MiB | files | "
           "store's CPU s | others' CPU s | ours vs (MiB/s) |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for res in res_list:
        ours = res["tools"]["ours"]
        for tool, r in res["tools"].items():
            label = f"**{labels[tool]}** (ours)" if tool == "ours" else labels[tool]
            if tool == "duckdb" and not duckdb_s3:
                label += " (writes local disk)"
            out.append(f"| {res['size_mib']} MiB, {res['rows']:,} rows, {res['repeats']} runs | {label} | "
                       f"{r['mib_per_s']:.1f} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['mib_per_cpu_s']:.1f} | "
                       f"{r['peak_rss_mib']:.0f} | {r['output_bytes'] / MIB:.1f} | {r['files']} | "
                       f"{r['server_cpu_s']:.2f} | {r['other_cpu_s']:.2f} | {ours['mib_per_s'] / r['mib_per_s']:.2f}x |")
    return out


def converter_explanation(doc):
    """Why the store and the codec move the figures, from the run's own measurements."""
    stores, labels = doc["stores"], doc["labels"]
    largest = max(doc["sizes_mib"])
    gib = lambda res: res["csv_bytes"] / MIB / 1024  # noqa: E731

    def at_largest(store, codec):
        return stores[store]["codecs"][codec]["sizes"][-1]

    combos = [(s, c) for s in stores for c in stores[s]["codecs"]]
    peers = [t for t in doc["tools"] if t != "ours"]
    out = ["### What the store and the codec change", ""]
    # ours vs each peer, per store and codec, on the largest size.
    out += [f"Ours vs each peer (MiB/s ratio, {largest} MiB, medians), per store and codec:", "",
            "| store, codec | " + " | ".join(f"vs {labels[p]}" for p in peers) + " | ours MiB/s | ours CPU s | "
            "others' CPU s (ours' run) |", "|---|" + "---:|" * (len(peers) + 3)]
    for s, c in combos:
        t = at_largest(s, c)["tools"]
        out.append(f"| {CONVERT_STORE_TITLES.get(s, s)}, {c} | "
                   + " | ".join(f"{t['ours']['mib_per_s'] / t[p]['mib_per_s']:.2f}x" for p in peers)
                   + f" | {t['ours']['mib_per_s']:.1f} | {t['ours']['cpu_s']:.2f} | {t['ours']['other_cpu_s']:.2f} |")
    out += ["", "What each store's requests cost (probes with boto3 on the same cores, the server's CPU from "
            "`/proc/<pid>/stat`), and the server's CPU seconds per GiB of CSV during each tool's conversion:", "",
            "| store | streamed GET MiB/s | server CPU-s per GiB GET | 1 MiB range GET ms | server CPU-s per GiB "
            "in 1 MiB ranges | 6 MiB PUT ms | 6 MiB multipart ms (complete ms) | "
            + " | ".join(f"server CPU-s/GiB, {labels[t]}" for t in doc["tools"]) + " |",
            "|---|" + "---:|" * (6 + len(doc["tools"]))]
    for s, sd in stores.items():
        p = sd.get("probes")
        if not p:
            continue
        per_tool = []
        for t in doc["tools"]:
            figs = [at_largest(s, c)["tools"][t]["server_cpu_s"] / gib(at_largest(s, c)) for c in sd["codecs"]]
            per_tool.append(f"{sum(figs) / len(figs):.1f}")
        out.append(f"| {CONVERT_STORE_TITLES.get(s, s)} | {p['get']['mib_per_s']:.0f} | "
                   f"{p['get']['server_cpu_s_per_gib']:.1f} | {p['range_get_1mib']['ms_per_request']:.1f} | "
                   f"{p['range_get_1mib']['server_cpu_s_per_gib']:.1f} | {p['put_6mib']['ms_per_object']:.0f} | "
                   f"{p['multipart_6mib']['ms_per_object']:.0f} ({p['multipart_6mib']['complete_ms']:.0f}) | "
                   + " | ".join(per_tool) + " |")
    # The codec: CPU seconds and output bytes, snappy against zstd, per tool.
    codec_lines = []
    for s, sd in stores.items():
        if "zstd" in sd["codecs"] and "snappy" in sd["codecs"]:
            z, n = at_largest(s, "zstd")["tools"], at_largest(s, "snappy")["tools"]
            codec_lines.append(f"| {CONVERT_STORE_TITLES.get(s, s)} | " + " | ".join(
                f"{z[t]['cpu_s']:.1f} / {n[t]['cpu_s']:.1f} ({z[t]['output_bytes'] / MIB:.0f} / "
                f"{n[t]['output_bytes'] / MIB:.0f} MiB)" for t in doc["tools"]) + " |")
    if codec_lines:
        out += ["", f"The codec: CPU seconds zstd / snappy ({largest} MiB; output MiB zstd / snappy):", "",
                "| store | " + " | ".join(labels[t] for t in doc["tools"]) + " |",
                "|---|" + "---:|" * len(doc["tools"])] + codec_lines
    out += [""]
    # The reading, from the same figures.
    text = []
    if "s3s-fs" in stores and "seaweedfs" in stores:
        a, b = stores["s3s-fs"].get("probes"), stores["seaweedfs"].get("probes")
        if a and b:
            text.append(
                f"Both stores share the machine's {doc['cores']} cores with the tool being measured, and neither "
                f"server's CPU is in the tool's figures. s3s-fs streams a GET in 4 KiB file reads: "
                f"{a['get']['mib_per_s']:.0f} MiB/s for one streamed GET at {a['get']['server_cpu_s_per_gib']:.1f} "
                f"server CPU-s per GiB (SeaweedFS: {b['get']['mib_per_s']:.0f} MiB/s, "
                f"{b['get']['server_cpu_s_per_gib']:.1f}), and a 1 MiB range GET takes "
                f"{a['range_get_1mib']['ms_per_request']:.0f} ms ({b['range_get_1mib']['ms_per_request']:.0f} ms). "
                f"A multipart upload of a 6 MiB object takes {a['multipart_6mib']['ms_per_object']:.0f} ms on s3s-fs, "
                f"{a['multipart_6mib']['complete_ms']:.0f} ms of it in CompleteMultipartUpload (which re-reads "
                f"and MD5-hashes the object), against {b['multipart_6mib']['ms_per_object']:.0f} ms "
                f"({b['multipart_6mib']['complete_ms']:.0f} ms) on SeaweedFS. A tool that reads in many small "
                f"sequential requests, or waits on each upload's completion, loses the most on s3s-fs; one that "
                f"keeps both cores busy loses the most wherever the server, or other work, takes one of them.")
    # What other work on the cores costs each tool: the runs with one core held.
    for s, c in combos:
        res = at_largest(s, c)
        taken = res.get("one_core_taken")
        if not taken:
            continue
        parts = []
        for t, r in taken.items():
            base = res["tools"][t]
            parts.append(f"{labels[t]} {base['mib_per_s']:.1f} -> {r['mib_per_s']:.1f} MiB/s "
                         f"({r['mib_per_s'] / base['mib_per_s'] - 1:+.0%}, CPU {base['cpu_s']:.1f} -> {r['cpu_s']:.1f} s)")
        text.append(f"With one of the {doc['cores']} cores held by a spinning process ({CONVERT_STORE_TITLES.get(s, s)}, "
                    f"{c}, {res['size_mib']} MiB, one run each): " + "; ".join(parts) + ".")
    if "polars" in doc["tools"]:
        ratios = {}
        for s, c in combos:
            t = at_largest(s, c)["tools"]
            ratios[(s, c)] = t["ours"]["mib_per_s"] / t["polars"]["mib_per_s"]
        lo, hi = min(ratios, key=ratios.get), max(ratios, key=ratios.get)
        text.append(
            f"Against Polars, ours ranges from {ratios[lo]:.2f}x ({CONVERT_STORE_TITLES.get(lo[0], lo[0])}, "
            f"{lo[1]}) to {ratios[hi]:.2f}x ({CONVERT_STORE_TITLES.get(hi[0], hi[0])}, {hi[1]}) in this run. "
            f"Two earlier runs disagreed further: 1.70x Polars on s3s-fs with zstd (the BENCHMARKS.md of "
            f"2026-11-23, taken at a 1-minute load average of 2.0, both cores already busy with other work, "
            f"Polars spending 43.6 CPU-s and 27.8 s on 1 GiB) and 0.68x on SeaweedFS with snappy (issue 17: "
            f"Polars 11.9 CPU-s and about 9 s). Both were taken with the converter of that time, which ran "
            f"a pass on one core while Polars spreads its work over every core: where the store's server "
            f"(s3s-fs reads at several CPU-s per GiB) or other work took a core, Polars lost the more, and "
            f"the single-core converter looked fast; on SeaweedFS with both cores free, Polars' second core "
            f"won. The converter now uses every core too, so both lose a share of a core taken by the store "
            f"or by other work; the runs with one core held above, the store's CPU seconds and the others' "
            f"CPU seconds of every run (the whole machine's busy time during the run, minus the tool's and "
            f"the store's) measure each of those here.")
    if codec_lines:
        for s in stores:
            if "zstd" in stores[s]["codecs"] and "snappy" in stores[s]["codecs"]:
                z, n = at_largest(s, "zstd")["tools"]["ours"], at_largest(s, "snappy")["tools"]["ours"]
                text.append(
                    f"The codec: on {CONVERT_STORE_TITLES.get(s, s)} ours spends "
                    f"{z['cpu_s']:.1f} CPU-s with zstd (level {doc.get('zstd_level', 3)}) and {n['cpu_s']:.1f} with "
                    f"snappy ({(z['cpu_s'] - n['cpu_s']) / gib(at_largest(s, 'zstd')):+.1f} CPU-s per GiB of CSV for "
                    f"zstd), and writes {z['output_bytes'] / n['output_bytes']:.2f}x the bytes of snappy's output "
                    f"with zstd.")
                break
    return out + [" ".join(text), ""] if text else out


def converter_profile():
    """Where the converter's CPU goes: a profile taken by hand (perf), before and after the work
    on every core. Fixed text: the figures are from that profile, not from this run."""
    return ["### Where the converter's CPU goes", "",
            "Sampled with `perf record` (999 Hz, DWARF call graphs) on 300 MiB of the same taxi CSV on the lean "
            "store, zstd, `AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1769`, on 2026-12-02; shares of the process's CPU "
            "samples. \"Before\" is the same per-row work as the single-thread converter (the profile of the "
            "first pool build, null regex still on); figures are the functions' own samples.", "",
            "| | before | after |",
            "|---|---:|---:|",
            "| `NULL_VALUES` regex on every CSV field (arrow's `NullRegex::is_null` and the regex search) | 14% | 1% |",
            "| CSV tokenising (`csv_core`) | 8% | 10% |",
            "| float parsing (arrow's `Float64Type` parser) | 7% | 9% |",
            "| Parquet dictionary encoding | 12% | 14% |",
            "| zstd | 5% | 6% |",
            "| memory copies and page faults | 7% | 6% |",
            "",
            "Wall and CPU on that file, the machine otherwise idle: the single-thread converter 3.7-4.1 s wall "
            "for 3.6-3.7 CPU-s; on the worker pool 2.3-2.4 s for the same CPU-s; without the regex a further "
            "12% less user CPU. After, the samples split 46% / 42% over the two workers and 9.5% on the pass "
            "loop's own thread (reading, cutting records, appending, uploads): decoding a batch (arrow's CSV "
            "decoder, our date and timestamp parsing, partitioning) is 48% of the CPU, encoding the columns "
            "36%.", "",
            "What changed: batches are decoded and partitioned on a pool of one worker per core while earlier "
            "ones are written, in input order; each file's columns are encoded in parallel (arrow's column "
            "writers; the file is byte for byte what one thread writes); CSV is decoded without the null regex "
            "when no `NULL_VALUES` word can be read as a value (only an empty field is null; the words are "
            "found in the text columns afterwards; a batch that fails that way is decoded again with the "
            "regex); a file no batch has written for 32 batches is closed rather than held until the memory "
            "budget asks (peak RSS at 1,769 MB on that file: 660 MB -> 240 MB).", "",
            "Since that profile, counted with `valgrind --tool=callgrind` (instructions of the converter's "
            "process, repeatable whatever else the machine does) on 30 MiB of the same CSV, zstd, s3s-fs: "
            "4,240,318,007 instructions before the quote-free CSV decoder and 3,755,254,574 after (-11.4%, "
            "2026-12-03, one build each); then 3,754,710,157 -> 3,705,335,866 (-1.3%) for dates and "
            "timestamps parsed while decoding (no text column between; same day, same file). The same "
            "output bytes in every build. The quote-free decoder cuts a record at its delimiters and "
            "parses the common number shapes itself (every other value by arrow's own parser); a batch "
            "with a quote, a bare `\\r`, another field count or a value that does not parse goes to "
            "arrow's CSV decoder as before.", "",
            "Reading the object (2026-12-03, 1 GiB of the same CSV, zstd, one run each, the machine otherwise "
            "idle): with one GetObject stream the converter took 8.2-13.1 s on s3s-fs (that store serves a "
            "stream in 4 KiB file reads, one thread at a time) and 10.8 s on SeaweedFS. Read as ranged GETs "
            "fetched ahead in parallel: 7.6-7.8 s on s3s-fs with 8 MiB chunks, 4 in flight, but 11.2 s on "
            "SeaweedFS, whose server spent 11.6 CPU-s serving them against 8.9 CPU-s for one stream (about "
            "20 ms of its CPU per request, on the same two cores as the converter); with 16 MiB chunks, 2-3 in "
            "flight: 7.4-7.8 s on s3s-fs and 9.9-10.1 s on SeaweedFS (server 9.5-9.9 CPU-s); 32 MiB chunks "
            "gained nothing more (10.9 s, 9.9 CPU-s). The reader uses 16 MiB chunks, one GET per core plus "
            "one in flight (2 to 8), and reuses the chunks' buffers.", "",
            "Peers between runs: in the runs of 2026-12-03 after 13:00, pyarrow took 2-2.7x the CPU it took "
            "in the run of 09:5x that morning on the same machine (same versions, same settings; reproduced "
            "alone: 5.2 s wall, 7.9 CPU-s on 100 MiB, s3s-fs, zstd, against 2.4 s and 3.0 CPU-s then), with "
            "0.3-0.9 CPU-s of others' CPU beside each of its runs; DuckDB and Polars were within 5-10% of "
            "their earlier figures. A page fault cost about 2 us on the machine then (2 GiB touched in 4 KiB "
            "pages: 1.06 s). The cause was not found. Against pyarrow's earlier figures (77.6-81.3 MiB per "
            "CPU-s) ours would be 1.5-1.6x.", "",
            "2026-12-04, sampled with `perf record` (999 Hz, call graphs) on 256 MiB of the same CSV on "
            "SeaweedFS, zstd: decoding (`decode_with`, the quote-free decoder inlined) 19% of the process's "
            "samples, Parquet dictionary encoding 15%, zstd 9%, `memchr` 9.5% (one search per field for the "
            "next delimiter, about 19 calls a record, each starting its vector loop over again), the digit "
            "loops of the number parsers 4.5%, memory copies 4.3%, page faults 2-3%. Now a record's "
            "delimiters are found in one pass, eight bytes at a time (a word compare, no `unsafe`), and a "
            "number's digits are checked and summed in one loop. 1 GiB on SeaweedFS, zstd, the two builds "
            "interleaved in one run, three runs each: user CPU 9.45-9.93 s -> 7.83-8.55 s, wall 10.7-11.4 s "
            "-> 9.8-10.5 s, the output files byte for byte the same. Each decoded batch's buffers (its bytes, "
            "about 1.6 MB at 16,384 taxi rows, and its record list) now go back to the pass for a later batch "
            "instead of a fresh allocation per batch: 167-173k minor page faults -> 152-165k per GiB, the "
            "wall time within the noise. Tried and not kept: mimalloc as the converter's allocator (faults "
            "down to 54-70k but more kernel time, since it hands freed memory back after a second, and peak "
            "RSS 240 -> 370-384 MB; with that purging off, 386-416 MB, over the RSS limit on SeaweedFS), and "
            "glibc's malloc tunables (trim threshold 4 GiB, mmap threshold 32 MiB: faults 56-60k, RSS the "
            "same, wall time within the noise). Through a 1 GiB run on SeaweedFS the converter keeps one "
            "core busy and the store's server the other (each 85-100%, sampled every 250 ms): wall time is "
            "about both processes' CPU seconds over the 2 cores.", ""]


def converter_section(doc, when):
    out = ["## parquet-converter", ""]
    if doc is None:
        return out + ["No figures (no converter.json): `scripts/bench.sh converter` makes them.", ""]
    if "stores" not in doc:
        return out + ["converter.json is from an older benchmark: `scripts/bench.sh converter` makes new figures.", ""]
    labels = doc["labels"]
    v = doc["versions"]
    settings = doc.get("peer_settings", {})
    out += [f"Generated NYC-taxi-like CSV (seed {doc['seed']}, no bad rows, {doc['days']} pickup days) in a local "
            f"S3 store, converted to Parquet partitioned by `year=/month=/day=` of the pickup time, S3 to S3, on "
            f"each store ({', '.join(sd['label'] for sd in doc['stores'].values())}) with each codec "
            f"({', '.join(next(iter(doc['stores'].values()))['codecs'])}; zstd at level {doc.get('zstd_level', 3)} "
            f"for every tool). The stores run one at a time, alone with the tools on the machine's "
            f"{doc['cores']} cores. Each tool runs as its own process under `/usr/bin/time`; the figures are the "
            f"medians of the runs (each run's figures are in `bench/results/converter.json`). The store "
            f"server's CPU seconds during each run and the CPU the rest of the machine spent meanwhile "
            f"(\"others'\") are shown beside them, in no tool's figures. Ours runs with "
            f"`AWS_LAMBDA_FUNCTION_MEMORY_SIZE={doc['memory_size_mb']}`, the memory Lambda gives one vCPU's "
            f"worth of (its memory budget follows from it). Peers are given the table's schema; ours infers it. "
            f"Every output is read back through S3 with pyarrow: row count, partitions, each row in its own "
            f"day's partition, and per partition the row count and the sum of `total_amount` equal to ours'. "
            f"Results from {doc['date']}; 1-minute load average {doc['loadavg'][0]:.1f} at the start, "
            f"{doc['loadavg'][1]:.1f} at the end; the run took {doc['seconds'] / 60:.1f} min.", "",
            "Each tool is given its best settings:", ""]
    versions = {"pyarrow": v["pyarrow"], "duckdb": v["duckdb"], "polars": v["polars"]}
    for tool in doc["tools"]:
        out.append(f"- {labels[tool]}{' ' + versions[tool] if tool in versions else ''}: {settings.get(tool, '')}")
    out += [""]
    if doc["duckdb_s3"]:
        out += [f"DuckDB I/O: {doc['duckdb_io']}; no network needed.", ""]
    else:
        out += [f"**DuckDB I/O: {doc['duckdb_io']}.**", ""]
    for store, sd in doc["stores"].items():
        for codec, cd in sd["codecs"].items():
            out += [f"### {CONVERT_STORE_TITLES.get(store, store)}, {codec}", ""]
            out += converter_table(cd["sizes"], labels, doc["duckdb_s3"]) + [""]
            out += checks_table([("issue", c["what"], c["ok"], c["figure"]) for c in cd["targets"]])
    return out + converter_explanation(doc) + converter_profile()


def chart(fire, ing, conv, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []  # (title, [(label, throughput MiB/s, peak RSS MiB or None, kind)], RSS limit or None)
    if fire and "events" in fire:
        bars = []
        for ev in fire["events"]:
            mib = ev["request_bytes"] / MIB
            for label, c, kind in ((f"{ev['name']}: ours", ev["in_process"], "ours"),
                                   (f"{ev['name']}: ours via runtime", ev.get("through_runtime"), "ours"),
                                   (f"{ev['name']}: seed Python", ev.get("seed"), "peer")):
                if c:
                    bars.append((label, mib / (c["wall_ms"] / 1000), None, kind))
        panels.append(("firehose-transformer\n~6 MB events", bars, None))
    if ing:
        bars = []
        for name, r in ing["rows"].items():
            kind = "ours" if name == "url-ingester" else ("ceiling" if "ceiling" in name else "peer")
            bars.append((name, r["mib_per_s"], r["peak_rss_mib"], kind))
        budget = ing["part_mib"] * (ing["concurrency"] + 1) + 32
        panels.append((f"url-ingester (lean store)\n{ing['size_mib']} MiB HTTP -> S3", bars, (budget, f"target {budget}")))
    if conv and "stores" in conv:
        # The largest size, per store and codec.
        for store, sd in conv["stores"].items():
            for codec, cd in sd["codecs"].items():
                res = cd["sizes"][-1]
                bars = []
                for tool, r in res["tools"].items():
                    label = conv["labels"][tool] + ("\n(local disk)" if tool == "duckdb" and not conv["duckdb_s3"] else "")
                    bars.append((label, r["mib_per_s"], r["peak_rss_mib"], "ours" if tool == "ours" else "peer"))
                lean = min(r["peak_rss_mib"] for t, r in res["tools"].items() if t != "ours") / 2
                panels.append((f"parquet-converter, {CONVERT_STORE_TITLES.get(store, store)}, {codec}\n"
                               f"{res['size_mib']} MiB CSV -> Parquet, S3 -> S3", bars, (lean, f"target {lean:.0f}")))
    if not panels:
        return False
    colors = {"ours": OURS_COLOR, "peer": PEER_COLOR, "ceiling": CEILING_COLOR}
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 7.5), squeeze=False)
    for col, (title, bars, limit) in enumerate(panels):
        labels = [b[0] for b in bars]
        c = [colors[b[3]] for b in bars]
        top, bottom = axes[0][col], axes[1][col]
        y = range(len(bars))
        top.barh(y, [b[1] for b in bars], color=c)
        top.set_yticks(list(y), labels, fontsize=8)
        top.invert_yaxis()
        top.set_title(title, fontsize=9)
        top.set_xlabel("throughput, MiB/s (higher is better)", fontsize=8)
        for i, b in enumerate(bars):
            top.annotate(f"{b[1]:.0f}", (b[1], i), xytext=(2, 0), textcoords="offset points", va="center", fontsize=7)
        if all(b[2] is None for b in bars):
            bottom.text(0.5, 0.5, "peak RSS not measured\n(timed in process)", ha="center", va="center", fontsize=9,
                        transform=bottom.transAxes)
            bottom.set_axis_off()
            continue
        bottom.barh(y, [b[2] or 0 for b in bars], color=c)
        bottom.set_yticks(list(y), labels, fontsize=8)
        bottom.invert_yaxis()
        bottom.set_xlabel("peak RSS, MiB (lower is better)", fontsize=8)
        if limit:
            bottom.axvline(limit[0], color="black", linestyle="--", linewidth=1)
            bottom.annotate(limit[1], (limit[0], -0.5), xytext=(3, -2), textcoords="offset points",
                            fontsize=7, va="top")
        for i, b in enumerate(bars):
            bottom.annotate(f"{b[2]:.0f}", (b[2], i), xytext=(2, 0), textcoords="offset points", va="center", fontsize=7)
    for ax in axes.flat:
        ax.tick_params(axis="x", labelsize=7)
        ax.margins(x=0.15)
    fig.suptitle("Tributary benchmarks, one run on one shared machine (ours in orange)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    args = ap.parse_args()
    fire, fire_when = load(args.results, "firehose")
    ing, ing_when = load(args.results, "ingester")
    conv, conv_when = load(args.results, "converter")
    chart_path = os.path.join(args.results, "chart.png")
    has_chart = chart(fire, ing, conv, chart_path)

    m = machine()
    timing = all_run_seconds(args.results)
    lines = ["# Benchmarks", "",
             "<!-- Generated by scripts/bench.sh (bench/report.py) from bench/results/*.json: do not edit by hand. -->",
             "",
             "Each function against the tools people would use instead, on the same data in the same run. "
             "**These figures come from one run on a shared, noisy machine**: read the ratios (ours vs each "
             "peer, measured minutes apart) rather than the absolute times, and expect a few percent to tens "
             "of percent of drift between runs. Throughput is input MiB per wall-clock second; CPU seconds are "
             "user + system of the tool's own process; peak RSS is the operating system's maximum resident set "
             "of that process.", ""]
    if has_chart:
        rel = os.path.relpath(chart_path, os.path.dirname(os.path.abspath(args.out)))
        lines += [f"![throughput and peak memory per tool per benchmark]({rel})", ""]
    lines += converter_section(conv, conv_when)
    lines += ingester_section(ing, ing_when)
    lines += firehose_section(fire, fire_when)
    lines += ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in m.items()]
    lines += ["", "## How to reproduce", "", "```sh",
              "scripts/bench.sh             # every benchmark, then this file and the chart",
              "scripts/bench.sh converter   # or one: firehose | ingester | converter | report",
              "BENCH_SIZE_MIB=256 BENCH_CONVERT_SIZES_MIB=20,100 scripts/bench.sh   # a quicker run",
              "```", "",
              "It builds the release binaries, installs the peers into a Python venv "
              "(`~/.cache/tributary/bench-venv`, from `scripts/requirements-bench.txt`; no other network "
              "access), runs each benchmark against servers on 127.0.0.1 only, writes the figures as JSON "
              "under `bench/results/`, then writes this file and `bench/results/chart.png`."]
    if timing is not None:
        total, stages = timing
        parts = ", ".join(f"{s} {fmt_s(t)}" for s, t in stages.items())
        lines += ["", f"The last `scripts/bench.sh all` here took {fmt_s(total)} ({parts}; each stage's "
                      f"release build included, so a warm build is quicker). Each section above says when its "
                      f"figures were taken."]
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}" + (f" and {chart_path}" if has_chart else ""))


if __name__ == "__main__":
    main()
