"""The seed's Python Firehose transformation handler, timed in process on a batch file.

Usage: python3 firehose_seed_handler.py batch.json
The handler is the one from the project's seed notes (decode, json.loads, add two fields,
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
    times = []
    for _ in range(8):
        t0 = time.perf_counter()
        # Lambda's Python runtime parses the request and serialises the response too.
        event = json.loads(raw)
        body = json.dumps(lambda_handler(event, None))
        times.append((time.perf_counter() - t0) * 1000)
    assert len(json.loads(body)["records"]) == len(event["records"])
    print(f"median_ms={statistics.median(times[1:]):.3f}")


if __name__ == "__main__":
    main()
