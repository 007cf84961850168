"""The seed's Python Firehose transformation handler, timed in process on a batch file.

Usage: python3 firehose_seed_handler.py batch.json [rounds]
Prints the median wall time and the CPU time (time.process_time, this process, one thread)
per event, over `rounds` rounds after one warm-up round. The handler is the one from the project's seed notes (decode, json.loads, add two fields,
json.dumps + newline, encode), as data engineers write it today.
"""
import base64
import json
import statistics
import sys
import time


def lambda_handler(event, context):
    output = []
    for record in event["records"]:
        payload = base64.b64decode(record["data"]).decode("utf-8")
        data = json.loads(payload)
        data["processed_at"] = "2024-01-15T10:30:00Z"
        data["source"] = "firehose"
        output.append({
            "recordId": record["recordId"],
            "result": "Ok",
            "data": base64.b64encode((json.dumps(data) + "\n").encode()).decode(),
        })
    return {"records": output}


def main():
    with open(sys.argv[1], "rb") as f:
        raw = f.read()
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    times, cpu = [], 0.0
    for i in range(rounds + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        # Lambda's Python runtime parses the request and serialises the response too.
        event = json.loads(raw)
        body = json.dumps(lambda_handler(event, None))
        t1, c1 = time.perf_counter(), time.process_time()
        if i > 0:
            times.append((t1 - t0) * 1000)
            cpu += (c1 - c0) * 1000
    assert len(json.loads(body)["records"]) == len(event["records"])
    print(f"median_ms={statistics.median(times):.3f}")
    print(f"cpu_ms={cpu / rounds:.3f}")


if __name__ == "__main__":
    main()
