"""The local S3 stores the benchmarks run against, and the CPU figures read around each command.

  s3s-fs     `local-s3` of the tests crate (s3s-fs over a folder), one process
  seaweedfs  `weed server -s3` started by scripts/seaweedfs.sh with one S3 identity, one process

Both listen on 127.0.0.1 and share the machine's cores with the clients, so the CPU a store's
server burns per byte shapes every client's figures: process_cpu_s() reads it from /proc.
"""
import os
import shutil
import subprocess
import sys

KEY_ID, SECRET = "tributary-test", "tributary-test-secret"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def s3_client(endpoint):
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
                        region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))


def start_seaweedfs(root, home):
    """Starts SeaweedFS with scripts/seaweedfs.sh; returns (endpoint, stop function)."""
    script = os.path.join(root, "scripts", "seaweedfs.sh")
    env = dict(os.environ, SEAWEEDFS_HOME=home, TEST_S3_ACCESS_KEY=KEY_ID, TEST_S3_SECRET_KEY=SECRET)
    weed = shutil.which("weed", path=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""))
    if weed:
        env["WEED"] = weed
    out = subprocess.run([script, "start"], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"seaweedfs.sh start failed: {out.stderr[-2000:]}")
    endpoint = next(l.split("=", 1)[1] for l in out.stdout.splitlines() if l.startswith("export TEST_S3_ENDPOINT="))
    s3_client(endpoint).create_bucket(Bucket="bench")

    def stop():
        subprocess.run([script, "stop"], env=env, capture_output=True)
    return endpoint, stop


def seaweedfs_pid(home):
    """The pid of the `weed server` that start_seaweedfs(root, home) started."""
    with open(os.path.join(home, "pid")) as f:
        return int(f.read().strip())


def process_cpu_s(pid):
    """User + system CPU seconds of a running process, all its threads (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s():
    """CPU seconds every core of the machine has spent busy since boot (/proc/stat), for the
    share of a run taken by other work: busy during it minus the client's and the store's."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    busy = sum(values[:8]) - values[3] - values[4]
    return busy / CLK_TCK
