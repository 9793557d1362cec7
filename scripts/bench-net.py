#!/usr/bin/env python3
"""Network legs of a real replication, side by side, on loopback.

One 256 MiB snapshot of random data (NB_MIB) replicated between two
file-backed pools (zfsrepl_tb_src, zfsrepl_tb_dst: created and destroyed
here) by `zfsrepl send`: local (splice), bare ssh to a private sshd
(`zfs send | ssh | zfs recv`, like syncoid's data path), plain TCP into
`zfsrepl serve --plain` (a `stunnel://` side) and TLS-PSK into
`zfsrepl serve --listen` (`tls://`). Variants run interleaved, NB_RUNS times
each, each into a fresh target. CPU = user+sys of the client (with its zfs
children) plus the server side (serve or sshd, with their reaped children);
the zfs-fuse daemon's CPU is reported apart.

Run as root with a release build: ZFSREPL_BIN=target/release/zfsrepl
python3 scripts/bench-net.py"""
import os, subprocess, time, resource, sys, re, shutil, socket

BIN = os.environ.get("ZFSREPL_BIN", "target/release/zfsrepl")
D = os.environ.get("NB_DIR", "/tmp/zfsrepl-bench-net")
SRC, DST = "zfsrepl_tb_src", "zfsrepl_tb_dst"
MIB = int(os.environ.get("NB_MIB", "256"))
RUNS = int(os.environ.get("NB_RUNS", "3"))
TICK = os.sysconf("SC_CLK_TCK")

def sh(*a, **kw):
    return subprocess.run(a, check=True, capture_output=True, text=True, **kw)

def cpu_of(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in f[11:15]) / TICK  # utime stime cutime cstime

def zfsfuse():
    return int(sh("pgrep", "-x", "zfs-fuse").stdout.split()[0])

def setup():
    os.makedirs(D, exist_ok=True)
    for p in (SRC, DST):
        subprocess.run(["zpool", "destroy", "-f", p], capture_output=True)
        img = f"{D}/{p}.img"
        with open(img, "wb") as f:
            f.truncate(5 << 30)
        sh("zpool", "create", "-m", "none", p, img)
    sh("zfs", "create", "-o", f"mountpoint={D}/mnt", f"{SRC}/data")
    with open(f"{D}/mnt/blob", "wb") as f:
        for _ in range(MIB):
            f.write(os.urandom(1 << 20))
    sh("zfs", "snapshot", f"{SRC}/data@s1")
    sh("zfs", "set", "mountpoint=none", f"{SRC}/data")
    sh("zfs", "create", f"{DST}/in")
    with open(f"{D}/psk.txt", "w") as f:
        f.write("bench:" + os.urandom(32).hex() + "\n")
    os.chmod(f"{D}/psk.txt", 0o600)
    with open(f"{D}/peers.toml", "w") as f:
        f.write(f'[[peer]]\nidentity = "bench"\nwrite-roots = ["{DST}/in"]\nallow-destroy = true\n')

def start_serve(extra):
    p = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", "--config", f"{D}/peers.toml"] + extra,
                         stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        m = re.search(r"listening on (\S+)", line)
        if m:
            return p, m.group(1)
    raise SystemExit("serve did not start")

def start_sshd():
    k = f"{D}/ssh"
    shutil.rmtree(k, ignore_errors=True); os.makedirs(k)
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{k}/host")
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{k}/client")
    shutil.copy(f"{k}/client.pub", f"{k}/authorized_keys")
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    open(f"{k}/sshd_config", "w").write(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {k}/host\nAuthorizedKeysFile {k}/authorized_keys\n"
        f"PidFile {k}/pid\nStrictModes no\nUsePAM no\nPermitRootLogin yes\nPasswordAuthentication no\n")
    os.makedirs("/run/sshd", exist_ok=True)
    p = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", f"{k}/sshd_config"])
    time.sleep(1)
    return p, port, f"{k}/client"

def measure(name, argv, server_pid, target):
    subprocess.run(["zfs", "destroy", "-r", target], capture_output=True)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    s0 = cpu_of(server_pid) if server_pid else 0
    z0 = cpu_of(zfsfuse())
    t0 = time.time()
    o = subprocess.run(argv, capture_output=True, text=True)
    dt = time.time() - t0
    if o.returncode != 0:
        print(name, "FAILED", o.stdout, o.stderr, file=sys.stderr)
        raise SystemExit(1)
    time.sleep(0.3)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    server = (cpu_of(server_pid) - s0) if server_pid else 0
    zf = cpu_of(zfsfuse()) - z0
    return dt, client + server, zf

def main():
    setup()
    tls, tls_addr = start_serve(["--psk-file", f"{D}/psk.txt"])
    plain, plain_addr = start_serve(["--plain", "--identity", "bench"])
    sshd, sport, skey = start_sshd()
    snap = f"{SRC}/data"
    ssh_opts = ["--ssh-port", str(sport), "--ssh-key", skey,
                "--ssh-option", "StrictHostKeyChecking=no", "--ssh-option", "UserKnownHostsFile=/dev/null"]
    variants = {
        "local (splice)": ([BIN, "send", "--no-sync-snap", snap, f"{DST}/in/local"], None, f"{DST}/in/local"),
        "ssh bare (zfs send | ssh | zfs recv)": ([BIN, "send", "--no-sync-snap"] + ssh_opts + [snap, f"root@127.0.0.1:{DST}/in/ssh"], sshd.pid, f"{DST}/in/ssh"),
        "zfsrepl plain TCP (serve --plain)": ([BIN, "send", "--no-sync-snap", snap, f"stunnel://{plain_addr}/{DST}/in/plain"], plain.pid, f"{DST}/in/plain"),
        "zfsrepl TLS-PSK 1.3 (serve --listen)": ([BIN, "send", "--no-sync-snap", "--psk-file", f"{D}/psk.txt", snap, f"tls://{tls_addr}/{DST}/in/tls"], tls.pid, f"{DST}/in/tls"),
    }
    res = {k: [] for k in variants}
    try:
        for r in range(RUNS):
            for k, (argv, pid, tgt) in variants.items():
                a = [x.replace(tgt, f"{tgt}{r}") for x in argv]
                res[k].append(measure(k, a, pid, f"{tgt}{r}"))
                print(r, k, res[k][-1], file=sys.stderr)
    finally:
        for p in (tls, plain, sshd):
            p.kill()
        for p in (SRC, DST):
            subprocess.run(["zpool", "destroy", "-f", p], capture_output=True)
    print(f"| leg | MiB/s (median of {RUNS}) | CPU s/GiB client+server | zfs-fuse CPU s/GiB |")
    print("|---|---|---|---|")
    gib = MIB / 1024
    for k, v in res.items():
        v = sorted(v)
        dt, cpu, zf = v[len(v) // 2]
        print(f"| {k} | {MIB / dt:.0f} | {cpu / gib:.2f} | {zf / gib:.2f} |")

main()
