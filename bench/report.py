#!/usr/bin/env python3
"""Renders scripts/bench.sh's results as the Markdown report (bench/REPORT.md,
the README's "Performance" section).

    report.py MACHINE RESULTS COMMANDS > REPORT.md

MACHINE: `key text` lines (machine, versions, load). RESULTS: `key number`
lines; a key measured several times (repetitions) appears several times, and
the report gives its median and its range. COMMANDS: the commands run, one a
line. A value that is missing prints as "not measured"."""
import statistics
import sys


def read_pairs(path):
    pairs = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition(" ")
            if key:
                pairs.setdefault(key, []).append(value)
    return pairs


MACHINE = read_pairs(sys.argv[1])
RAW = read_pairs(sys.argv[2])
with open(sys.argv[3], encoding="utf-8") as cmd_file:
    COMMANDS = [line.rstrip("\n") for line in cmd_file if line.strip()]
NA = "not measured"


def m(key):
    return MACHINE.get(key, [NA])[0]


def values(key):
    out = []
    for v in RAW.get(key, []):
        try:
            out.append(float(v))
        except ValueError:
            pass
    return out


def med(key):
    v = values(key)
    return statistics.median(v) if v else None


def fmt(x, digits=0, unit=""):
    if x is None:
        return NA
    return f"{x:,.{digits}f}{unit}"


def spread(key, digits=0):
    """median, and the range when the value was measured more than once"""
    v = values(key)
    if not v:
        return NA, ""
    if len(v) == 1:
        return fmt(v[0], digits), "1 run"
    return fmt(statistics.median(v), digits), f"{fmt(min(v), digits)} – {fmt(max(v), digits)} ({len(v)} runs)"


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return NA
    return f"{a / b:.{digits}f}×"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def header():
    quick = m("quick") == "1"
    lines = [
        "## Performance",
        "",
        f"Measured by `make bench` (`scripts/bench.sh{' --quick' if quick else ''}`) on "
        f"{m('date')}, commit {m('commit')} ({m('build_type')} build), in {m('elapsed_s')} s. Every number below comes "
        "from this one run on this one machine, p2prpc and its peers side by side.",
        "",
    ]
    if quick:
        lines += ["**Quick run: small sizes and short runs; only the harness is checked here, "
                  "not the numbers.**", ""]
    lines += [
        f"- Machine: {m('machine_cores')} cores, {m('machine_cpu')}, {m('machine_mem')}, "
        f"{m('machine_kernel')}.",
        f"- Load average (1, 5, 15 min) at the start: {m('load_start')}; at the end: "
        f"{m('load_end')}. Everything shares the 2 cores (clients, broker, workers, peers): "
        "other work on the machine makes every number noisier, so compare within one run.",
        f"- Versions: {m('v_compiler')}; {m('v_gearmand')}; {m('v_wrk')}; {m('v_hyperfine')}; "
        f"{m('v_openssl')}; libmicrohttpd {m('v_libmicrohttpd')}; SQLite {m('v_sqlite')}; "
        f"libcurl {m('v_libcurl')}.",
        f"- p2prpc's broker runs on its durable SQLite store, `--sync {m('sync')}`"
        + (" (SQLite WAL: a committed call survives a crash of the broker; the last commits "
           "may be lost on a power cut)" if m("sync") == "normal" else " (an fsync at each commit)")
        + ", in every part; one round-trip row is measured with `--sync full` too.",
        "",
    ]
    return lines


def summary():
    crt, grt = med("crt_p50_us"), med("rtt_p50_us")
    tp, gfg, gbg = med("tp_calls_per_s"), med("fg_jobs_per_s"), med("bg_jobs_per_s")
    big, dgst = med("big0_total_ms"), med("dgst_ms")
    rss = [med(k) for k in ("big_client_kib", "big_broker_kib", "big_worker_kib", "big_child_kib",
                            "raw_big_broker_kib", "raw_big_worker_kib", "raw_big_child_kib")]
    rss_known = [r for r in rss if r is not None]
    qs, qb = med("qd_small_p50_ms"), med("qd_big_p50_ms")
    rows = [
        ["no-op round trip p50, durable store", "≤ 500 µs", fmt(crt, 0, " µs"),
         f"gearmand in memory {fmt(grt, 0, ' µs')}", ratio(crt, grt)],
        ["throughput, 32 clients × 4 workers", "≥ 8,000 calls/s", fmt(tp, 0, "/s"),
         f"gearmand {fmt(gfg, 0, '/s')} in memory, {fmt(gbg, 0, '/s')} SQLite queue",
         f"{ratio(tp, gfg)} / {ratio(tp, gbg)}"],
        ["cache hit p50", "≤ 20 µs", fmt(med("cache_p50_us"), 1, " µs"), "—", "—"],
        [f"{fmt(med('big_mib') or med('raw_big_mib'))} MiB in + out, wall time (client)", "≤ 4× one hash pass",
         fmt(big and big / 1000, 1, " s"), f"`openssl dgst` {fmt(dgst and dgst / 1000, 2, ' s')}",
         ratio(big, dgst, 1)],
        ["peak RSS of every process", "≤ 64 MiB",
         fmt(max(rss_known) / 1024 if rss_known else None, 1, " MiB (largest)"), "—", "—"],
        [f"claim p50 at {fmt(med('qd_big'))} ÷ at 1,000 queued", "≤ 1.2",
         ratio(qb, qs), "—", "—"],
        [f"{fmt(med('idle_waiters'))} idle long-polls: broker RSS, CPU", "≤ 200 MiB, ≈ 0",
         f"{fmt(med('idle_rss_kib') and med('idle_rss_kib') / 1024, 1, ' MiB')}, "
         f"{fmt(med('idle_cpu_pct'), 2, ' %')}", "—", "—"],
    ]
    return ["### Against the targets", "",
            table(["metric", "target", "p2prpc", "peer, same run", "p2prpc ÷ peer"], rows), ""]


def roundtrip():
    rows = [
        ["p2prpc: client submit → result (`p2p_client_submit` + `p2p_future_get`)",
         fmt(med("crt_calls")), fmt(med("crt_p50_us"), 0), fmt(med("crt_p99_us"), 0),
         ratio(med("crt_p50_us"), med("rtt_p50_us"))],
        ["p2prpc without the client: push (execute) → long-poll sees done (`worker_bench`)",
         fmt(med("wrt_calls")), fmt(med("wrt_p50_us"), 0), fmt(med("wrt_p99_us"), 0),
         ratio(med("wrt_p50_us"), med("rtt_p50_us"))],
        ["the same, broker `--sync full` (an fsync at each commit)",
         fmt(med("full_wrt_calls")), fmt(med("full_wrt_p50_us"), 0),
         fmt(med("full_wrt_p99_us"), 0), ratio(med("full_wrt_p50_us"), med("rtt_p50_us"))],
        ["gearmand in memory: libgearman foreground job (`gearman_noop --mode rtt`)",
         fmt(med("rtt_jobs")), fmt(med("rtt_p50_us"), 0), fmt(med("rtt_p99_us"), 0), "1.00×"],
        ["HTTP floor: trivial libmicrohttpd route, `wrk` on 1 connection", "—",
         fmt(med("floor_p50_us"), 0), fmt(med("floor_p99_us"), 0),
         ratio(med("floor_p50_us"), med("rtt_p50_us"))],
    ]
    return ["### 1. Synchronous round trip (no-op, one worker already waiting)", "",
            table(["system", "calls", "p50 µs", "p99 µs", "p50 ÷ gearmand"], rows), ""]


def throughput():
    rows = []
    for label, key in (("p2prpc: 32 client threads × 4 worker processes (`call_bench`)",
                        "tp_calls_per_s"),
                       ("gearmand in memory, foreground jobs", "fg_jobs_per_s"),
                       ("gearmand, background jobs, `--queue-type=libsqlite3`", "bg_jobs_per_s"),
                       ("HTTP floor: `wrk`, 32 connections", "floor_req_per_s")):
        median, rng = spread(key)
        rows.append([label, median, rng, ratio(med("tp_calls_per_s"), med(key))])
    lines = ["### 2. Throughput (32 concurrent clients, 4 workers)", "",
             table(["system", "median calls/s", "range", "p2prpc ÷ this"], rows), ""]
    if "gearman_no_sqlite" in RAW:
        lines += ["This gearmand build has no SQLite queue (`--queue-type=libsqlite3`): its "
                  "durable row is not measured.", ""]
    return lines


def cache():
    rows = [["p2prpc: submit answered from the local cache (no network)",
             fmt(med("cache_calls")), fmt(med("cache_p50_us"), 1), fmt(med("cache_p99_us"), 1)]]
    return ["### 3. Cache hit (small arguments)", "",
            table(["case", "calls", "p50 µs", "p99 µs"], rows), ""]


def mib_of(key):
    v = med(key)
    return fmt(v / 1024 if v is not None else None, 1)


def large():
    mib = fmt(med("big_mib") or med("raw_big_mib"))
    dgst = med("dgst_ms")
    rows = []
    for k, label in ((0, "input uploaded"), (1, "input already on the broker (a new client: "
                                                "it hashes the input, uploads nothing)")):
        total = med(f"big{k}_total_ms")
        rows.append([f"p2prpc through the client, {label}", fmt(total, 0),
                     fmt(med(f"big{k}_uploaded_mib"), 0), ratio(total, dgst, 1)])
    d_rng = f"{fmt(med('dgst_min_ms'))} – {fmt(med('dgst_max_ms'))} ms over 3 runs"
    rows.append([f"floor: `openssl dgst -sha256` over the same size (hyperfine median, {d_rng})",
                 fmt(dgst),
                 "—", "1.0×"])
    raw = []
    for k, label in ((0, "input uploaded (PUT)"), (1, "input on the broker (HEAD)")):
        raw.append([label, fmt(med(f"raw_big{k}_total_ms"), 0), fmt(med(f"raw_big{k}_hash_ms"), 0),
                    fmt(med(f"raw_big{k}_upload_ms"), 0), fmt(med(f"raw_big{k}_call_ms"), 0),
                    fmt(med(f"raw_big{k}_download_ms"), 0)])
    rss = [["client", mib_of("big_client_kib"), "—"],
           ["broker", mib_of("big_broker_kib"), mib_of("raw_big_broker_kib")],
           ["worker (parent)", mib_of("big_worker_kib"), mib_of("raw_big_worker_kib")],
           ["worker (the call's child)", mib_of("big_child_kib"), mib_of("raw_big_child_kib")]]
    return [f"### 4. Large files: {mib} MiB in, {mib} MiB out (`p2prpc_copy`)", "",
            "Wall time from `p2p_client_submit` (the client hashes the input) to "
            "`p2p_future_get` returning the output downloaded into the client's cache and "
            "checked: upload, the call (the worker downloads the input, the function writes a "
            "new file, the worker hashes and uploads it), download.", "",
            table(["run", "wall ms", "MiB uploaded", "÷ one hash pass"], rows), "",
            "The same call over raw HTTP (`worker_bench`, no client), step by step:", "",
            table(["run", "wall ms", "hash", "upload", "call", "download"], raw), "",
            table(["process", "peak RSS MiB (VmHWM), client run", "raw run"], rss), ""]


def queue_depth():
    big = fmt(med("qd_big"))
    rows = [["1,000", fmt(med("qd_small_p50_ms"), 2), fmt(med("qd_small_p99_ms"), 2)],
            [big, fmt(med("qd_big_p50_ms"), 2), fmt(med("qd_big_p99_ms"), 2)]]
    return ["### 5. Queue depth: claim latency (`search_work`, one worker, queue kept full)", "",
            table(["queued calls", "p50 ms", "p99 ms"], rows), "",
            f"Ratio of the p50s: {ratio(med('qd_big_p50_ms'), med('qd_small_p50_ms'))}.", ""]


def idle():
    rows = [[fmt(med("idle_waiters")), fmt(med("idle_seconds"), 1),
             fmt(med("idle_rss_kib") and med("idle_rss_kib") / 1024, 1),
             fmt(med("idle_hwm_kib") and med("idle_hwm_kib") / 1024, 1),
             fmt(med("idle_cpu_pct"), 2)]]
    return ["### 6. Idle waiters: long-polls parked on one broker (`idle_bench`)", "",
            table(["waiters", "idle seconds", "broker RSS MiB", "broker peak MiB",
                   "broker CPU % over the idle time"], rows), ""]


def notes():
    lines = []
    failed = sorted(k[len("failed_"):] for k in RAW if k.startswith("failed_"))
    if failed:
        lines.append(f"- These steps failed in this run (their rows say not measured): "
                     f"{', '.join(failed)}.")
    for key, text in (("gearman_missing", "gearmand or the Gearman peer is not installed "
                                          "(`scripts/deps.sh --bench`)."),
                      ("wrk_missing", "wrk is not installed: no HTTP floor."),
                      ("client_missing", "the client benchmark (`call_bench`) is not built "
                                         "in this tree: the client rows are not measured.")):
        if key in RAW:
            lines.append("- " + text)
    return (["### Notes", ""] + lines + [""]) if lines else []


def commands():
    return ["### Commands", "",
            "Run from the repository root; `$WORK` is the run's scratch directory.", "",
            "```"] + COMMANDS + ["```", ""]


def main():
    lines = header() + summary() + roundtrip() + throughput() + cache() + large()
    lines += queue_depth() + idle() + notes() + commands()
    sys.stdout.write("\n".join(lines))


main()
