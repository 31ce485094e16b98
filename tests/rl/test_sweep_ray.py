"""The ray backend (rl.sweep_ray, rl.ray_cluster, rl.sweep_trial).

Default suite (no cluster): the one-line connection and token errors, a cluster address nothing answers at, the
preflight check of a node (run in-process), its verdicts per node, and the progress a trial reports to Tune.

Marked ``ray_cluster`` (run by ``.ci/run`` after the default suite: ``pytest -m ray_cluster``): a real two-node cluster
started with ``ray start`` on 127.0.0.1 (token authentication on, neither node with FSAE_MNIST_DIR or this checkout on
its path). A 6-run sweep through ``--ray-address 127.0.0.1:PORT`` survives the loss of the worker node (all its
processes killed at once; its run resumes on the head from its newest checkpoint) and compare.py reads the 6 runs from
the storage path; a driver without the token, and nodes without MNIST, are one line and exit 2; SIGTERM stops the
sweep cleanly (exit 130) and the next sweep continues it with Tuner.restore. A node lost during the preflight is a
warning, not a problem.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

ray = pytest.importorskip("ray")  # the optional extra (pip install -e '.[ray]'); .ci/run installs it

from fsae.checkpoint import sha256_file  # noqa: E402
from fsae.config import ConfigError, to_dict  # noqa: E402
from fsae.data import clear_mnist_cache  # noqa: E402
from rl import ray_cluster  # noqa: E402
from rl.agent import train_agent  # noqa: E402
from rl.config import AgentConfig  # noqa: E402
from rl.sweep import RayConfig  # noqa: E402
from rl.sweep_trial import preflight  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "sweeps" / "tiny.yaml"
BANDIT = str(ROOT / "configs" / "agent" / "digit_bandit.yaml")
TINY_SET = [
    "torch_threads=1",
    "eval_episodes=2",
    "env_kwargs.episode_length=8",
    "eval_env_kwargs.episode_length=8",
    "hyperparams.n_steps=64",
    "hyperparams.batch_size=64",
    "hyperparams.n_epochs=1",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------------------------------
# Default suite: no cluster


def test_connection_errors_are_one_line_with_the_fix():
    # What ray.init raised against a cluster with token authentication (Ray 2.60), with only Ray's log lines naming
    # the token, and the AuthenticationError it raises itself in other paths.
    captured = (
        "gcs_client.cc:210: Failed to get cluster ID from GCS server: Unauthenticated: RPC error: InvalidAuthToken"
    )
    failed = ConnectionError("Failed to connect to Ray cluster at 192.0.2.2:6380")
    auth = ray.exceptions.AuthenticationError("RPC error: InvalidAuthToken: Authentication token is missing")
    for error, logs in ((failed, captured), (auth, "")):
        message = str(ray_cluster.connection_error("127.0.0.1:6380", error, logs))
        assert message.startswith("the Ray cluster at 127.0.0.1:6380 refused this driver's token (InvalidAuthToken")
        assert "export RAY_AUTH_MODE=token" in message and "ray get-auth-token" in message and "\n" not in message
    other = str(ray_cluster.connection_error("127.0.0.1:6380", failed, "Failed to connect to GCS within 60 s"))
    assert (
        other.startswith("cannot connect to the Ray cluster at 127.0.0.1:6380: Failed to connect") and "\n" not in other
    )


def test_no_cluster_at_the_address_is_one_line(tmp_path, capsys, load_script):
    port = _free_port()  # nothing listens there: refused at once, not after ray.init's minutes of retries
    argv = ["--config", str(TINY), "--set", f"logdir={tmp_path / 'logs'}", "--backend", "ray", "--ray-address"]
    t0 = time.monotonic()
    assert load_script("sweep").main([*argv, f"127.0.0.1:{port}"]) == 2
    assert time.monotonic() - t0 < 60
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: no Ray cluster answers at 127.0.0.1:{port} ("), err
    assert f"ray start --head --port {port}" in err[0]
    assert not ray.is_initialized()
    assert list(tmp_path.iterdir()) == []  # the new logdir and its lock file are gone again


def _tiny_checkpoint(path: Path) -> Path:
    from fsae.checkpoint import save_fsae
    from fsae.model import FSAE, FSAEConfig, LayerSpec

    model = FSAE(FSAEConfig((1, 28, 28), [LayerSpec("conv", 4, 4, 2), LayerSpec("linear", 10)], round=True))
    return save_fsae(path, model, variant="round")


def test_preflight_names_what_this_node_lacks(tmp_path, monkeypatch):
    ckpt = _tiny_checkpoint(tmp_path / "fsae_round.pt")
    storage = tmp_path / "storage"
    (storage / ".ray_tune").mkdir(parents=True)
    agent = to_dict(AgentConfig(env_kwargs={"episode_length": 8}))
    spec = {"envs": [agent], "storage": str(storage), "token": ".ray_tune/t", "reply": ".ray_tune/t.node"}
    # Everything there: no problems, and the reply reaches the storage (the driver reads it: a shared folder).
    (storage / ".ray_tune" / "t").write_text("x")
    answer = preflight({**spec, "checkpoints": {str(ckpt): sha256_file(ckpt)}})
    assert answer["problems"] == [] and (storage / ".ray_tune" / "t.node").read_text() == socket.gethostname()
    assert set(answer["versions"]) == {"python", "torch", "stable_baselines3", "gymnasium"}
    # A missing checkpoint, another file under a planned checkpoint's path, a storage that is not the driver's.
    (storage / ".ray_tune" / "t").unlink()
    missing = tmp_path / "gone.pt"
    answer = preflight({**spec, "checkpoints": {str(missing): "0" * 64, str(ckpt): "ab" * 32}})
    assert answer["problems"] == [
        f"checkpoint {missing} does not exist here",
        f"checkpoint {ckpt} differs from the driver's (SHA-256 abababababab...)",
        f"storage {storage}: not the driver's folder (its test file is not visible here)",
    ]
    # No MNIST where FSAE_MNIST_DIR points (and no mirror to download it from, or an empty one): named with the folder.
    empty = tmp_path / "no_mnist"
    empty.mkdir()
    monkeypatch.setenv("FSAE_MNIST_DIR", str(empty))
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    import envs.pool

    monkeypatch.setattr(envs.pool, "_pools", {})
    clear_mnist_cache()
    try:
        (problem,) = preflight({**spec, "checkpoints": {}, "storage": str(tmp_path), "token": "t0"})["problems"][:1]
    finally:
        clear_mnist_cache()
    assert problem.startswith("cannot make fsae/DigitBandit-v0 (DatasetError: MNIST not found in ")
    assert problem.endswith(f"MNIST is looked up in {empty})")


def test_node_verdicts_and_resources():
    head = {
        "NodeManagerAddress": "10.0.0.1",
        "NodeID": "a" * 56,
        "Resources": {"CPU": 4.0, "node:__internal_head__": 1},
    }
    worker = {"NodeManagerAddress": "10.0.0.2", "NodeID": "b" * 56, "Resources": {"CPU": 2.0, "GPU": 1.0}}
    answer = {"problems": ["checkpoint /x.pt does not exist here"], "versions": {}}
    assert ray_cluster.node_problems(worker, answer, True) == [
        f"node 10.0.0.2 (id {'b' * 12}): checkpoint /x.pt does not exist here"
    ]
    assert ray_cluster.node_problems(head, {"problems": [], "versions": {}}, True) == []
    assert ray_cluster.node_problems(head, {"problems": [], "versions": {}}, False) == [
        f"node 10.0.0.1 (id {'a' * 12}, head): what it writes into the storage does not reach this driver (not shared)"
    ]
    assert ray_cluster.node_problems(worker, None, True) == [
        f"node 10.0.0.2 (id {'b' * 12}): no answer within {ray_cluster.PREFLIGHT_TIMEOUT_S} s"
    ]
    (line,) = ray_cluster.node_problems(worker, RuntimeError("pip failed\n  on line 2"), True)
    assert line == f"node 10.0.0.2 (id {'b' * 12}): RuntimeError: pip failed on line 2"
    nodes = [head, worker]
    assert ray_cluster.resources_problem(nodes, RayConfig(cpus_per_run=2, gpus_per_run=0.5)) == ""  # the worker
    assert ray_cluster.resources_problem(nodes, RayConfig(cpus_per_run=4)) == ""  # the head
    problem = ray_cluster.resources_problem(nodes, RayConfig(cpus_per_run=3, gpus_per_run=1))
    assert problem.startswith("no node has the 3 CPUs and 1 GPUs of one run (node 10.0.0.1 (id aaaaaaaaaaaa, head): 4 ")
    with pytest.raises(ConfigError, match="ray.cpus_per_run must be > 0"):
        RayConfig(cpus_per_run=0)


def test_a_node_lost_during_the_preflight_is_not_a_problem_of_the_node():
    # What the preflight task pinned to a node that died after ray.nodes() listed it raised (Ray 2.60, in CI).
    gone = ray.exceptions.TaskUnschedulableError(
        "The node specified via NodeAffinitySchedulingStrategy doesn't exist any more or is infeasible, and "
        "soft=False was specified."
    )
    assert ray_cluster.node_lost(gone) and ray_cluster.node_lost(ray.exceptions.NodeDiedError("node died"))
    for there in (
        None,
        {"problems": [], "versions": {}},
        RuntimeError("pip failed"),
        ray.exceptions.TaskUnschedulableError("no node has 3 CPUs"),
    ):
        assert not ray_cluster.node_lost(there)


def test_the_sweep_goes_on_without_a_node_lost_during_the_preflight(tmp_path, monkeypatch):
    """check_nodes with Ray's calls replaced: the head's preflight runs here, in-process; the other node's task fails
    as a task pinned to a dead node does. A warning and a pass, unless the lost node was the only one a run fits."""
    from rl.sweep import load_sweep, plan

    head = {
        "NodeManagerAddress": "127.0.0.1",
        "NodeID": "a" * 56,
        "Resources": {"CPU": 1.0, "node:__internal_head__": 1},
    }
    gone = {"NodeManagerAddress": "127.0.0.2", "NodeID": "b" * 56, "Resources": {"CPU": 4.0, "GPU": 1.0}}

    class Ref:
        def __init__(self, node_id: str, spec: dict):
            self.node_id, self.spec = node_id, spec

    class Task:  # ray.remote(...)(preflight).options(scheduling_strategy=...).remote(spec) -> a Ref
        def __init__(self, fn):
            self.fn = fn

        def options(self, scheduling_strategy):
            self.node_id = scheduling_strategy.node_id
            return self

        def remote(self, spec):
            return Ref(self.node_id, spec)

    def get(ref: Ref) -> dict:
        if ref.node_id == gone["NodeID"]:
            raise ray.exceptions.TaskUnschedulableError(
                "The node specified via NodeAffinitySchedulingStrategy doesn't exist any more or is infeasible, and "
                "soft=False was specified."
            )
        return preflight(ref.spec)

    monkeypatch.setattr(ray_cluster.ray, "nodes", lambda: [head | {"Alive": True}, gone | {"Alive": True}])
    monkeypatch.setattr(ray_cluster.ray, "remote", lambda **kwargs: Task)
    monkeypatch.setattr(ray_cluster.ray, "wait", lambda refs, num_returns, timeout: (refs, []))
    monkeypatch.setattr(ray_cluster.ray, "get", get)
    pending = plan(load_sweep(TINY), check_files=False)
    said: list[str] = []
    ray_cluster.check_nodes(pending, str(tmp_path), RayConfig(), said.append)
    assert said == [
        f"ray: warning: 1 node(s) lost during the preflight, the sweep goes on without them: ['node 127.0.0.2 (id "
        f"{'b' * 12})']",
        "ray: preflight passed on 1 node(s) (data, 0 checkpoint(s), storage)",
    ]
    with pytest.raises(ConfigError, match=r"^1 problem\(s\) before the first run: no node has the 1 CPUs and 1 GPUs"):
        ray_cluster.check_nodes(pending, str(tmp_path), RayConfig(gpus_per_run=1), said.append)


def test_progress_reaches_the_trial_at_each_evaluation_and_checkpoint(tmp_path):
    """What a trial reports to Tune: after each periodic evaluation and each checkpoint, the latest and best mean
    reward (the values evaluations.npz holds)."""
    from fsae.config import apply_overrides, from_dict, load_yaml

    d = apply_overrides(load_yaml(BANDIT), [*TINY_SET, "eval_freq=128", "checkpoint_freq=256"])
    cfg = from_dict(AgentConfig, {**d, "total_steps": 256, "n_envs": 2, "device": "cpu", "logdir": str(tmp_path)})
    cfg.progress_bar = False
    seen: list[dict] = []
    metrics = train_agent(cfg, on_progress=seen.append)
    assert [(s["timesteps"], s["checkpoint"]) for s in seen] == [(128, False), (256, True)]
    with np.load(tmp_path / "DigitBandit-v0" / "none" / "seed0" / "eval" / "evaluations.npz") as npz:
        means = npz["results"].mean(axis=1)
        assert list(npz["timesteps"]) == [128, 256]
    assert [s["eval_mean_reward"] for s in seen] == pytest.approx(list(means))
    assert [s["best_eval_mean_reward"] for s in seen] == pytest.approx([means[0], means.max()])
    assert metrics["best_eval/mean_reward"] == pytest.approx(means.max())


# --------------------------------------------------------------------------------------------------------------------
# A real cluster on 127.0.0.1 (pytest -m ray_cluster)


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of every process below ``pid``, from /proc."""
    parent, start = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        p = int(stat.parent.name)
        parent[p], start[p] = int(fields[1]), fields[19]
    children: dict[int, list[int]] = {}
    for p, pp in parent.items():
        children.setdefault(pp, []).append(p)
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append((child, start[child]))
            todo.append(child)
    return out


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


class LocalCluster:
    """A Ray cluster of ``ray start --block`` processes on 127.0.0.1, each node with its own temp dir; ``stop`` ends
    those processes and their children, by pid, and nothing else."""

    def __init__(self, token: str):
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths live below it
        drop = {"FSAE_MNIST_DIR", "PYTHONPATH", "RAY_ADDRESS"}  # the nodes get both from the sweep's runtime_env
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
        # The GCS marks a silent node dead after 3 missed health checks 1 s apart (Ray's defaults: 5 at 3 s).
        fast = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
        self.env = {k: v for k, v in os.environ.items() if k not in drop} | self.auth | fast
        self.procs: list[subprocess.Popen] = []
        self.lost: list[str] = []  # node ids of the nodes kill_node ended
        self.ray = str(Path(sys.executable).with_name("ray"))

    def start(self, *args: str) -> subprocess.Popen:
        log = self.temp / f"node{len(self.procs)}.log"
        common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats", "--block"]
        cmd = [self.ray, "start", *args, *common, "--temp-dir", str(self.temp / f"n{len(self.procs)}")]
        with open(log, "w") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=self.env, cwd=self.temp)
        self.procs.append(proc)
        deadline = time.time() + 180
        while "Ray runtime started" not in log.read_text():
            assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        return proc

    def raylet(self, proc: subprocess.Popen) -> tuple[int, str]:
        """The pid and node id of the raylet of the node ``proc`` started."""
        for pid, _ in _descendants(proc.pid):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"/raylet"):
                node_id = next(a for a in argv if a.startswith(b"--node_id="))
                return pid, node_id.split(b"=", 1)[1].decode()
        raise AssertionError(f"no raylet below pid {proc.pid}")

    def freeze_node(self, proc: subprocess.Popen, sig: int = signal.SIGSTOP) -> None:
        """Send ``sig`` to the node ``proc`` started, its raylet and every worker process below them, once each, only
        to processes that are still the ones listed (start time checked). SIGSTOP first, so that nothing forks or
        writes while the tree is read; SIGCONT undoes it."""
        for pid, started in [(proc.pid, _start_time(proc.pid)), *_descendants(proc.pid)]:
            if started is not None and _start_time(pid) == started:
                os.kill(pid, sig)

    def kill_node(self, proc: subprocess.Popen) -> None:
        """Lose the node ``proc`` started as a machine is lost: its whole process tree stopped, then SIGKILLed (a raylet
        killed alone leaves its workers running a while, and a run might finish there). It leaves ``procs``."""
        self.lost.append(self.raylet(proc)[1])
        self.freeze_node(proc)
        self.freeze_node(proc, signal.SIGKILL)
        proc.wait()
        self.procs.remove(proc)

    def alive_nodes(self) -> list[str]:
        """The node ids the cluster's GCS counts as alive, asked by a driver of its own."""
        ask = "import json, ray; ray.init(address='%s'); "
        ask += "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))"
        env = {**os.environ, **self.auth}
        cmd = [sys.executable, "-c", ask % self.address]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    def restore_worker(self) -> None:
        """Two nodes again where a worker node was lost (by a test, or in a test that failed midway): a new worker
        starts once the GCS counts the lost ones dead."""
        if len(self.procs) >= 2:
            return
        deadline = time.time() + 120
        while still := set(self.lost) & set(self.alive_nodes()):
            assert time.time() < deadline, f"the lost node(s) {sorted(still)} still count as alive"
            time.sleep(2)
        self.start("--address", self.address)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            below = _descendants(proc.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            time.sleep(1)
            for pid, started in below:
                if _start_time(pid) == started:  # still the same process: ours
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def two_nodes():
    c = LocalCluster(secrets.token_hex(16))
    try:
        c.start("--head", "--port", str(c.port), "--include-dashboard", "false")
        c.start("--address", c.address)
        yield c
    finally:
        c.stop()


@pytest.fixture
def cluster(two_nodes):
    """The module's cluster, with its two nodes whatever the test before it left."""
    two_nodes.restore_worker()
    return two_nodes


def _sweep_yaml(tmp_path: Path, seeds: list[int], conditions: list[str], steps: int) -> Path:
    cfg = {
        "envs": [{"name": "DigitBandit", "config": BANDIT}],
        "conditions": conditions,
        "seeds": seeds,
        "total_steps": steps,
        "n_envs": 2,
        "device": "cpu",
        "logdir": str(tmp_path / "unused"),
        "set": [*TINY_SET, "eval_freq=256", "checkpoint_freq=128"],
        "ray": {"max_failures": 3},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _sweep(cluster: LocalCluster, config: Path, storage: Path, *extra: str, env: dict | None = None):
    cmd = [sys.executable, str(ROOT / "scripts" / "sweep.py"), "--config", str(config), "--backend", "ray"]
    cmd += ["--ray-address", cluster.address, "--storage-path", str(storage), *extra]
    return cmd, {**os.environ, **cluster.auth, **(env or {})}


def _first_line(run_dir: Path) -> str:
    try:
        return (run_dir / "train.log").read_text().splitlines()[0]
    except (OSError, IndexError):
        return ""


@pytest.mark.ray_cluster
def test_sweep_survives_a_lost_worker_node(cluster, tmp_path):
    storage = tmp_path / "storage"
    config = _sweep_yaml(tmp_path, [0, 1, 2], ["none", "copy"], 1024)
    head_id = cluster.raylet(cluster.procs[0])[1]
    worker_id = cluster.raylet(cluster.procs[1])[1]
    cmd, env = _sweep(cluster, config, storage)
    # A driver without the cluster's token: one line with the fix, exit 2 (and fast: one connection attempt).
    no_token = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")} | {"RAY_gcs_server_port_wait_time_s": "1"}
    refused = subprocess.run(cmd, env=no_token, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"error: the Ray cluster at {cluster.address} refused this driver's token (InvalidAuthToken; RAY_AUTH_MODE is "
        f"unset); {ray_cluster.AUTH_FIX}"
    ]
    # Nodes without MNIST where the runs would look for it: each node named before any run starts, exit 2.
    (tmp_path / "no_mnist").mkdir()
    bad = subprocess.run(
        [*cmd, "--set", f"ray.env_vars={{FSAE_MNIST_DIR: {tmp_path / 'no_mnist'}}}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2, bad.stdout + bad.stderr
    (line,) = bad.stderr.strip().splitlines()
    assert line.startswith("error: 2 problem(s) before the first run: node ") and "MNIST not found" in line, line
    assert f"(id {head_id[:12]}, head): cannot make fsae/DigitBandit-v0" in line and f"(id {worker_id[:12]}): " in line
    assert not list(storage.glob("DigitBandit-v0/*/seed*")), "a run started"

    # The sweep; once a run on the worker node has written a checkpoint, the worker node is lost.
    out = tmp_path / "sweep.out"
    with open(out, "w") as f:
        sweep = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    deadline, lost = time.time() + 240, None
    worker = cluster.procs[1]

    def unfinished_on_the_worker() -> list[Path]:
        return [
            r
            for r in storage.glob("DigitBandit-v0/*/seed*")
            if worker_id in _first_line(r)
            and list(r.glob("checkpoints/agent_*_steps.zip"))
            and not (r / "metrics.json").exists()
        ]

    while lost is None:
        assert sweep.poll() is None and time.time() < deadline, out.read_text()[-3000:]
        if unfinished_on_the_worker():
            cluster.freeze_node(worker)  # nothing on the worker finishes while we choose
            lost = next(iter(unfinished_on_the_worker()), None)
            if lost is None:
                cluster.freeze_node(worker, signal.SIGCONT)
        time.sleep(0.2)
    cluster.kill_node(worker)
    assert sweep.wait(timeout=300) == 0, out.read_text()[-5000:]
    text = out.read_text()
    assert "ray: preflight passed on 2 node(s)" in text
    assert (
        "its worker or node was lost; restarting it from its newest agent checkpoint, if it wrote one (failure 1 of 3)"
        in text
    )
    assert "sweep: 6/6 runs finished, 0 failed" in text
    runs = sorted(storage.glob("DigitBandit-v0/*/seed*"))
    assert len(runs) == 6 and all((r / "done.json").is_file() and (r / "metrics.json").is_file() for r in runs)
    # The lost run went on on the head, from its checkpoint; its curves stop at 1024 steps as an unbroken run's.
    log = (lost / "train.log").read_text().splitlines()
    assert worker_id in log[0] and any(line.startswith("--- ") and "resumed on node " + head_id in line for line in log)
    assert json.loads((lost / "done.json").read_text())["node"] == head_id
    assert "# resumed at step " in (lost / "command.txt").read_text()
    assert json.loads((lost / "metrics.json").read_text())["timesteps"] == 1024
    # compare.py reads the 6 runs from the storage path (Tune's own files there are not mistaken for runs).
    compare = [sys.executable, str(ROOT / "scripts" / "compare.py"), str(storage), "--threshold", "1"]
    result = subprocess.run(compare, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "| DigitBandit-v0 | none | 3 |" in result.stdout and "| DigitBandit-v0 | copy | 3 |" in result.stdout
    assert "skipped" not in result.stdout + result.stderr
    # Again: nothing to do.
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "6 already finished (skipped), 0 to run" in again.stdout, again.stderr
    # The cluster gets a new worker machine, once the GCS has the lost one dead (the tests after this one need two).
    cluster.restore_worker()
    alive = cluster.alive_nodes()
    assert len(alive) == 2 and head_id in alive and worker_id not in alive


def _sigterm_after_a_checkpoint(
    cmd: list[str], env: dict, out: Path, storage: Path, pattern: str, ready: Callable[[], bool] = lambda: True
) -> float:
    """Start the sweep ``cmd`` (its output to ``out``), SIGTERM it once a file matching ``pattern`` appears in
    ``storage`` (an agent checkpoint) and ``ready()`` holds, assert it exits 130; return the seconds from the signal
    to the exit."""
    with open(out, "w") as f:
        sweep = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while not (list(storage.glob(pattern)) and ready()):
        assert sweep.poll() is None and time.time() < deadline, out.read_text()[-3000:]
        time.sleep(0.2)
    t0 = time.time()
    sweep.send_signal(signal.SIGTERM)
    assert sweep.wait(timeout=120) == 130, out.read_text()[-5000:]
    return time.time() - t0


@pytest.mark.ray_cluster
def test_sigterm_stops_cleanly_and_the_next_sweep_restores(cluster, tmp_path):
    storage = tmp_path / "storage"
    config = _sweep_yaml(tmp_path, [0, 1], ["none"], 2048)
    cmd, env = _sweep(cluster, config, storage, "--set", "ray.max_failures=0")
    out = tmp_path / "sweep.out"
    checkpoint = "DigitBandit-v0/none/seed*/checkpoints/agent_*_steps.zip"
    stopped_in = _sigterm_after_a_checkpoint(cmd, env, out, storage, checkpoint)
    assert "sweep interrupted; start it again to finish the remaining runs" in out.read_text()
    assert stopped_in < 60, stopped_in
    index = json.loads((storage / ".ray_tune" / "sweep-1.json").read_text())
    assert index == {"runs": ["DigitBandit/none/seed0", "DigitBandit/none/seed1"], "ended": False}
    unfinished = [r for r in storage.glob("DigitBandit-v0/none/seed*") if not (r / "done.json").exists()]
    assert unfinished
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"ray: continuing the interrupted attempt {storage}/.ray_tune/sweep-1 (Tuner.restore)" in again.stdout
    assert all((r / "done.json").is_file() for r in storage.glob("DigitBandit-v0/none/seed*"))
    resumed = [r for r in unfinished if "# resumed at step " in (r / "command.txt").read_text()]
    assert resumed, "no run resumed from its checkpoint"
    assert json.loads((storage / ".ray_tune" / "sweep-1.json").read_text())["ended"] is True


@pytest.mark.ray_cluster
def test_uri_storage_ships_the_checkpoints_with_the_trial(cluster, tmp_path):
    """Storage as a URI (file:// here; s3:// and gs:// alike): the run writes on its node, its agent checkpoints are
    Tune checkpoints of the run folder in the storage, and a restarted trial whose node-local folder is gone resumes
    from the one Tune hands back. The finished folder lands in <uri>/<env>/<condition>/seed<N>."""
    from rl.sweep_trial import staging_root

    storage = tmp_path / "bucket"
    uri = f"file://{storage}"
    config = _sweep_yaml(tmp_path, [0], ["none"], 2048)
    cmd, env = _sweep(cluster, config, storage)
    cmd[cmd.index("--storage-path") + 1] = uri
    checkpoint = ".ray_tune/sweep-1/*/checkpoint_*/checkpoints/agent_*_steps.zip"

    def registered() -> bool:
        """A trial's checkpoint lands in the storage before the driver records it in Tune's state, and a stop in
        between restores the trial without it. Tune keeps one (num_to_keep=1): the driver deletes the first once it
        has recorded a newer one, so its absence beside a newer one says a checkpoint is on record."""
        found = [p.name for p in storage.glob(".ray_tune/sweep-1/*/checkpoint_*")]
        return bool(found) and "checkpoint_000000" not in found

    _sigterm_after_a_checkpoint(cmd, env, tmp_path / "sweep.out", storage, checkpoint, registered)
    local = staging_root(uri) / "DigitBandit-v0" / "none" / "seed0"
    assert (local / "config.yaml").is_file() and not (storage / "DigitBandit-v0").exists()
    shutil.rmtree(staging_root(uri))  # as if the trial came back on another machine
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"ray: continuing the interrupted attempt {uri}/.ray_tune/sweep-1 (Tuner.restore)" in again.stdout
    run = storage / "DigitBandit-v0" / "none" / "seed0"
    assert (run / "done.json").is_file() and json.loads((run / "metrics.json").read_text())["timesteps"] == 2048
    assert "# resumed at step " in (run / "command.txt").read_text()
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "1 already finished (skipped), 0 to run" in again.stdout, again.stderr
