#!/usr/bin/env python3
"""Checks the compose files and Dockerfiles of p2prpc without a Docker engine:
each compose file parses as YAML and names the services, images, volumes and
networks it should; the Dockerfiles start from Debian 12 slim and install only
packages scripts/deps.sh lists.

    compose_check.py SOURCE_DIR
"""
import re
import sys
from pathlib import Path

import yaml

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


def load(path):
    with open(path) as f:
        doc = yaml.safe_load(f)
    check(isinstance(doc, dict), f"{path}: not a mapping")
    return doc or {}


def refs(service, key):
    """The names a service lists under `key` (a list or a mapping)."""
    v = service.get(key) or []
    return list(v.keys()) if isinstance(v, dict) else list(v)


def check_common(path, doc):
    """Every volume and network a service uses is declared at the top."""
    services = doc.get("services") or {}
    volumes = doc.get("volumes") or {}
    networks = doc.get("networks") or {}
    for name, s in services.items():
        check("image" in s, f"{path}: service {name} has no image")
        for net in refs(s, "networks"):
            check(net in networks, f"{path}: {name} uses undeclared network {net}")
        for vol in s.get("volumes") or []:
            src = vol.split(":")[0]
            if not src.startswith((".", "/")):
                check(src in volumes, f"{path}: {name} uses undeclared volume {src}")
        for dep in refs(s, "depends_on"):
            check(dep in services, f"{path}: {name} depends on unknown {dep}")


def check_mongo(path, services, volumes):
    m = services.get("mongo") or {}
    check(str(m.get("image", "")).startswith("mongo:"), f"{path}: mongo image {m.get('image')}")
    check("healthcheck" in m, f"{path}: mongo has no healthcheck")
    check(any(v.startswith("mongo-data:") for v in m.get("volumes") or []),
          f"{path}: mongo data not on the named volume")
    check("mongo-data" in volumes, f"{path}: no mongo-data volume")


def check_broker(path, services):
    b = services.get("broker") or {}
    cmd = b.get("command") or []
    check("--store" in cmd and "mongodb://mongo:27017/p2prpc" in cmd,
          f"{path}: broker does not use MongoDB: {cmd}")
    check(((b.get("depends_on") or {}).get("mongo") or {}).get("condition") == "service_healthy",
          f"{path}: broker does not wait for a healthy mongo")
    # Scalable with --scale broker=N: a port range, no fixed name, a healthcheck.
    check("8470-8479:8470" in (b.get("ports") or []), f"{path}: broker ports {b.get('ports')}")
    check("container_name" not in b, f"{path}: broker has a fixed container name")
    check("healthcheck" in b, f"{path}: broker has no healthcheck")
    check(not any(str(v).startswith("broker-data") for v in b.get("volumes") or []),
          f"{path}: scaled brokers would share one data volume (and node identity)")
    check("p2prpc" in (b.get("build") or {}).get("additional_contexts", {}),
          f"{path}: broker build lacks the p2prpc context")


def check_worker(path, services):
    w = services.get("worker") or {}
    # Scalable with --scale worker=N: no fixed name, no published port.
    check("ports" not in w, f"{path}: worker publishes ports")
    check("container_name" not in w, f"{path}: worker has a fixed container name")
    check("--discovery" in (w.get("command") or []), f"{path}: worker has no --discovery")


def check_generated(src):
    for ex in sorted((src / "tests/golden").iterdir()):
        bpath = ex / "broker/broker.docker-compose.yml"
        b = load(bpath)
        check_common(bpath, b)
        services = b.get("services") or {}
        check(set(services) == {"mongo", "broker"}, f"{bpath}: services {sorted(services)}")
        check(services.get("broker", {}).get("image") == "p2prpc-brokerapp", f"{bpath}: image")
        check_mongo(bpath, services, b.get("volumes") or {})
        check_broker(bpath, services)
        check((b.get("networks") or {}).get("p2prpc", {}).get("name") == "p2prpc",
              f"{bpath}: network p2prpc not named")
        wpath = ex / "worker/worker.docker-compose.yml"
        w = load(wpath)
        check_common(wpath, w)
        services = w.get("services") or {}
        check(set(services) == {"worker"}, f"{wpath}: services {sorted(services)}")
        check(services.get("worker", {}).get("image") == "p2prpc-workerapp", f"{wpath}: image")
        check_worker(wpath, services)
        check((w.get("networks") or {}).get("p2prpc", {}).get("external") is True,
              f"{wpath}: the p2prpc network is not external")


def check_deployment(src):
    path = src / "docker-compose/docker-compose.yml"
    d = load(path)
    check_common(path, d)
    services = d.get("services") or {}
    check(set(services) == {"mongo", "broker", "worker", "client"},
          f"{path}: services {sorted(services)}")
    images = {n: s.get("image") for n, s in services.items()}
    check(images.get("broker") == "p2prpc-app-broker" and images.get("worker") == "p2prpc-app-worker"
          and images.get("client") == "p2prpc-app-client", f"{path}: images {images}")
    check(set(d.get("volumes") or {}) == {"mongo-data", "client-cache"},
          f"{path}: volumes {sorted(d.get('volumes') or {})}")
    check(set(d.get("networks") or {}) == {"backend", "p2prpc"}, f"{path}: networks")
    check_mongo(path, services, d.get("volumes") or {})
    check_broker(path, services)
    check_worker(path, services)
    check("client" in (services.get("client", {}).get("profiles") or []),
          f"{path}: the client is not on demand (profile client)")
    # The build contexts exist in the tree (the example's generated programs).
    for n in ("broker", "worker", "client"):
        ctx = services[n]["build"]["context"]
        default = re.sub(r"\$\{P2PRPC_APP:-([^}]*)\}", r"\1", ctx)
        check((src / "docker-compose" / default / "Dockerfile").is_file(),
              f"{path}: {n} context {default} has no Dockerfile")
    disc = (src / "docker-compose/discovery.txt").read_text()
    check("http://broker:8470" in disc, "docker-compose/discovery.txt does not name the broker")


def deps_packages(src):
    text = (src / "scripts/deps.sh").read_text()
    block = re.search(r"PACKAGES=\((.*?)\)", text, re.S).group(1)
    return set(re.sub(r"#.*", "", block).split())


def check_dockerfiles(src):
    allowed = deps_packages(src)
    for df in sorted((src / "tests/golden").glob("*/*/Dockerfile")):
        text = df.read_text()
        check(re.search(r"^FROM debian:12-slim$", text, re.M) is not None, f"{df}: not Debian 12 slim")
        install = re.search(r"apt-get install -y --no-install-recommends \\\n(.*?) &&", text, re.S)
        check(install is not None, f"{df}: no apt-get install")
        pkgs = set(install.group(1).replace("\\", " ").split()) if install else set()
        check(pkgs and pkgs <= allowed, f"{df}: packages not in deps.sh: {sorted(pkgs - allowed)}")


def main():
    src = Path(sys.argv[1])
    check_generated(src)
    check_deployment(src)
    check_dockerfiles(src)
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    if failures:
        return 1
    print("compose check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
