"""The Docker engine layer against the real engine: builds are cached by source digest, runs
are sandboxed, bounded in time and output, cancellable, leave no container behind, and hand
back their artifacts byte for byte.

No registry can be reached: the base image is imported from the host's busybox-static
(``tests/integration/docker_images.py``) and job images are built ``FROM`` it. These tests fail,
never skip, when no Docker engine answers (``scripts/docker-up`` starts one).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobrunner.docker_engine import DockerEngine
from jobrunner.engine import (
    LABEL_JOB,
    LABEL_RUN,
    LABEL_SOURCE_DIGEST,
    ArtifactLimits,
    RunResult,
    RunSpec,
    RunStatus,
)
from jobrunner.errors import BuildFailed, EngineUnavailable
from store.artifacts import ArtifactStore
from tests.integration.docker_images import (
    BUSYBOX_IMAGE,
    build_context_tar,
    docker_client,
    ensure_busybox_image,
)

pytestmark = pytest.mark.docker

JOB_SCRIPT = """\
echo "hello from the image's CMD"
echo "GREETING=$GREETING"
"""
JOB_FILES = {
    "Dockerfile": f'FROM {BUSYBOX_IMAGE}\nCOPY job.sh /job.sh\nCMD ["sh", "/job.sh"]\n',
    "job.sh": JOB_SCRIPT,
}


@pytest.fixture(scope="session")
def docker_api() -> Any:
    """A pinged low-level client with the busybox base image present (fails otherwise)."""
    api = docker_client()
    ensure_busybox_image(api)
    return api


@pytest.fixture(scope="module")
def job_image(docker_api: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The job image, built once through the engine under test (later sessions reuse it:
    its digest is the digest of its context)."""
    work = tmp_path_factory.mktemp("job-image")
    context = build_context_tar(JOB_FILES, work / "context.tar")
    digest = "test-" + hashlib.sha256(context.read_bytes()).hexdigest()
    engine = DockerEngine(ArtifactStore(work / "store"))
    try:
        result = asyncio.run(engine.build(context, "Dockerfile", digest, {LABEL_JOB: "test-job"}))
    finally:
        engine.close()
    return result.image_id


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def engine(docker_api: Any, store: ArtifactStore) -> Iterator[DockerEngine]:
    engine = DockerEngine(store, stop_grace_seconds=1)
    yield engine
    engine.close()


@pytest.fixture
def run_id(docker_api: Any) -> Iterator[str]:
    """A fresh run id; the test fails if a container of this run is left behind."""
    run = f"test-{uuid.uuid4().hex[:12]}"
    yield run
    assert containers_of(docker_api, run) == [], "a container of the run was left behind"


def containers_of(api: Any, run_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api.containers(
        all=True, filters={"label": f"{LABEL_RUN}={run_id}"}
    )
    return found


def spec(image: str, run_id: str, **overrides: Any) -> RunSpec:
    values: dict[str, Any] = {
        "image": image,
        "labels": {LABEL_JOB: "test-job", LABEL_RUN: run_id, LABEL_SOURCE_DIGEST: "d"},
        "timeout_seconds": 30,
        "memory_mb": 64,
        "cpus": 0.5,
        "pids_limit": 64,
    }
    values.update(overrides)
    return RunSpec(**values)


async def run(
    engine: DockerEngine, run_spec: RunSpec, cancel: asyncio.Event | None = None
) -> tuple[RunResult, bytes]:
    """Run and return the result and every byte ``on_output`` saw."""
    live = bytearray()

    async def on_output(chunk: bytes) -> None:
        live.extend(chunk)

    result = await engine.run(run_spec, on_output, cancel or asyncio.Event())
    return result, bytes(live)


# --- build ----------------------------------------------------------------------------------


async def test_a_second_build_of_the_same_digest_reuses_the_image(
    engine: DockerEngine, docker_api: Any, tmp_path: Path
) -> None:
    context = build_context_tar(JOB_FILES, tmp_path / "context.tar")
    digest = f"test-cache-{uuid.uuid4().hex}"
    labels = {LABEL_JOB: "cache-test"}
    try:
        first = await engine.build(context, "Dockerfile", digest, labels)
        second = await engine.build(context, "Dockerfile", digest, labels)
        images = docker_api.images(filters={"label": f"{LABEL_SOURCE_DIGEST}={digest}"})
    finally:
        for image in docker_api.images(filters={"label": f"{LABEL_SOURCE_DIGEST}={digest}"}):
            docker_api.remove_image(image["Id"], force=True)
    assert not first.cached
    assert "Successfully built" in first.log
    assert second.cached
    assert second.image_id == first.image_id
    assert [image["Id"] for image in images] == [first.image_id]
    assert images[0]["Labels"][LABEL_JOB] == "cache-test"
    assert images[0]["Labels"][LABEL_SOURCE_DIGEST] == digest


async def test_a_dockerfile_that_fails_is_a_permanent_build_error_with_its_log(
    engine: DockerEngine, docker_api: Any, tmp_path: Path
) -> None:
    files = {"Dockerfile": f"FROM {BUSYBOX_IMAGE}\nRUN echo step-output && exit 7\n"}
    context = build_context_tar(files, tmp_path / "broken.tar")
    digest = f"test-broken-{uuid.uuid4().hex}"
    with pytest.raises(BuildFailed, match="returned a non-zero code: 7") as caught:
        await engine.build(context, "Dockerfile", digest, {LABEL_JOB: "broken"})
    assert "step-output" in str(caught.value)  # the tail of the build log
    assert docker_api.images(filters={"label": f"{LABEL_SOURCE_DIGEST}={digest}"}) == []
    with pytest.raises(BuildFailed, match="Dockerfile"):
        await engine.build(context, "Missing.Dockerfile", digest, {LABEL_JOB: "broken"})


async def test_an_unreachable_engine_is_engine_unavailable(store: ArtifactStore) -> None:
    engine = DockerEngine(store, base_url="unix:///nonexistent/docker.sock")
    with pytest.raises(EngineUnavailable):
        await engine.ping()
    with pytest.raises(EngineUnavailable):
        await engine.run(RunSpec(image="x"), None, asyncio.Event())
    engine.close()


# --- run: outcome, command, env -------------------------------------------------------------


async def test_the_image_cmd_runs_and_env_reaches_the_container(
    engine: DockerEngine, job_image: str, run_id: str
) -> None:
    result, live = await run(engine, spec(job_image, run_id, env=("GREETING=hi there",)))
    assert result.status is RunStatus.SUCCEEDED
    assert result.exit_code == 0
    assert result.output == b"hello from the image's CMD\nGREETING=hi there\n"
    assert live == result.output
    assert result.output_bytes == len(result.output)
    assert not result.output_truncated


async def test_command_replaces_cmd_and_a_non_zero_exit_fails_with_that_code(
    engine: DockerEngine, job_image: str, run_id: str
) -> None:
    command = ("sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 42")
    result, _ = await run(engine, spec(job_image, run_id, command=command))
    assert result.status is RunStatus.FAILED
    assert result.exit_code == 42
    assert b"hello from the image" not in result.output
    assert sorted(result.output.splitlines()) == [b"to-stderr", b"to-stdout"]
    assert result.error == "exited with code 42"


async def test_a_job_silent_for_longer_than_the_client_timeout_keeps_its_output(
    job_image: str, run_id: str, store: ArtifactStore
) -> None:
    engine = DockerEngine(store, client_timeout_seconds=1)
    command = ("sh", "-c", "echo before; sleep 2.5; echo after")
    try:
        result, live = await run(engine, spec(job_image, run_id, command=command))
    finally:
        engine.close()
    assert result.status is RunStatus.SUCCEEDED
    assert result.output == live == b"before\nafter\n"


# --- run: output ----------------------------------------------------------------------------


async def test_ten_times_the_output_cap_keeps_head_tail_marker_and_true_count(
    engine: DockerEngine, job_image: str, run_id: str
) -> None:
    limit = 4096
    script = "echo FIRST-LINE; yes 0123456789abcdef | head -c 40960; echo; echo LAST-LINE"
    run_spec = spec(job_image, run_id, command=("sh", "-c", script), output_limit=limit)
    result, live = await run(engine, run_spec)
    total = len(b"FIRST-LINE\n") + 40960 + 1 + len(b"LAST-LINE\n")
    assert result.status is RunStatus.SUCCEEDED
    assert result.output_bytes == total
    assert len(live) == total  # followers saw everything, live
    assert result.output_truncated
    assert result.output.startswith(b"FIRST-LINE\n0123456789abcdef\n")
    assert result.output.endswith(b"\nLAST-LINE\n")
    omitted = total - limit
    assert f"[longshore: {omitted} bytes omitted of {total} total]".encode() in result.output
    head, _, tail = result.output.partition(b"\n... [longshore:")
    assert len(head) == limit // 2
    assert len(tail.split(b"] ...\n", 1)[1]) == limit // 2


async def test_output_over_the_limit_with_on_output_limit_fail_stops_the_job(
    engine: DockerEngine, job_image: str, run_id: str
) -> None:
    run_spec = spec(job_image, run_id, command=("yes",), output_limit=1000, on_output_limit="fail")
    result, _ = await asyncio.wait_for(run(engine, run_spec), 20)
    assert result.status is RunStatus.FAILED
    assert result.error == "output exceeded 1000 bytes (onOutputLimit=fail)"
    assert result.output_truncated
    assert result.output_bytes > 1000


# --- run: time limit and cancellation -------------------------------------------------------


async def test_a_job_sleeping_past_its_timeout_ends_timed_out_with_no_container_left(
    engine: DockerEngine, job_image: str, run_id: str, docker_api: Any
) -> None:
    command = ("sh", "-c", "echo started; sleep 60")
    result, _ = await run(engine, spec(job_image, run_id, command=command, timeout_seconds=1))
    assert result.status is RunStatus.TIMED_OUT
    assert result.output == b"started\n"
    assert result.error == "timed out after 1 s"
    assert containers_of(docker_api, run_id) == []


async def test_a_job_ignoring_sigterm_is_killed_after_the_grace_period(
    engine: DockerEngine, job_image: str, run_id: str
) -> None:
    command = ("sh", "-c", "trap '' TERM; echo stubborn; sleep 60")
    loop = asyncio.get_running_loop()
    started = loop.time()
    result, _ = await run(engine, spec(job_image, run_id, command=command, timeout_seconds=1))
    assert result.status is RunStatus.TIMED_OUT
    assert result.exit_code == 137  # SIGKILL once the 1 s grace period passed
    assert loop.time() - started < 15


async def test_cancelling_a_running_job_stops_and_removes_its_container(
    engine: DockerEngine, job_image: str, run_id: str, docker_api: Any
) -> None:
    cancel = asyncio.Event()
    seen = bytearray()

    async def on_output(chunk: bytes) -> None:
        seen.extend(chunk)
        if b"ready" in seen:
            assert len(containers_of(docker_api, run_id)) == 1
            cancel.set()

    command = ("sh", "-c", "echo ready; sleep 60")
    result = await engine.run(spec(job_image, run_id, command=command), on_output, cancel)
    assert result.status is RunStatus.CANCELLED
    assert result.artifacts == ()
    assert containers_of(docker_api, run_id) == []


async def test_cancelling_the_awaiting_task_still_removes_the_container(
    engine: DockerEngine, job_image: str, run_id: str, docker_api: Any
) -> None:
    ready = asyncio.Event()

    async def on_output(chunk: bytes) -> None:
        ready.set()

    command = ("sh", "-c", "echo ready; sleep 60")
    task = asyncio.create_task(
        engine.run(spec(job_image, run_id, command=command), on_output, asyncio.Event())
    )
    await asyncio.wait_for(ready.wait(), 20)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert containers_of(docker_api, run_id) == []


# --- run: sandbox ---------------------------------------------------------------------------

SANDBOX_PROBE = """\
grep -E '^(CapPrm|CapEff|CapBnd|NoNewPrivs):' /proc/self/status
echo "interfaces: $(ls /sys/class/net | tr '\\n' ' ')"
tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sed 's/^/netdev: /'
touch /probe 2>/dev/null && echo "root: writable" || echo "root: read-only"
echo x > /tmp/probe && echo "tmp: writable"
echo "uid: $(id -u)"
wget -q -T 2 -O- http://127.0.0.1:1/ >/dev/null 2>&1; echo "wget: $?"
"""


async def test_a_container_has_no_network_no_capabilities_and_a_read_only_root(
    engine: DockerEngine, job_image: str, run_id: str, docker_api: Any
) -> None:
    inspected: list[dict[str, Any]] = []

    async def on_output(chunk: bytes) -> None:
        if not inspected:
            (container,) = containers_of(docker_api, run_id)
            inspected.append(await asyncio.to_thread(docker_api.inspect_container, container["Id"]))

    result = await engine.run(
        spec(job_image, run_id, command=("sh", "-c", SANDBOX_PROBE)), on_output, asyncio.Event()
    )
    text = result.output.decode()
    assert result.status is RunStatus.SUCCEEDED, text
    facts = dict(re.findall(r"^([\w ]+):\s*(.*)$", text, re.MULTILINE))
    assert facts["CapEff"] == "0000000000000000"
    assert facts["CapPrm"] == "0000000000000000"
    assert facts["CapBnd"] == "0000000000000000"
    assert facts["NoNewPrivs"] == "1"
    assert facts["interfaces"].split() == ["lo"]
    assert re.findall(r"^netdev: (.*)$", text, re.MULTILINE) == ["lo"]
    assert facts["root"] == "read-only"
    assert facts["tmp"] == "writable"
    assert facts["wget"] != "0"

    (info,) = inspected
    host = info["HostConfig"]
    labels = info["Config"]["Labels"]
    assert labels[LABEL_JOB] == "test-job"
    assert labels[LABEL_RUN] == run_id
    assert labels[LABEL_SOURCE_DIGEST] == "d"
    assert host["NetworkMode"] == "none"
    assert host["Privileged"] is False
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert not host.get("Binds")
    assert all(mount["Type"] != "bind" for mount in info["Mounts"])
    assert host["Memory"] == 64 * 1024 * 1024
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 64


# --- run: artifacts -------------------------------------------------------------------------

ARTIFACT_SCRIPT = """\
mkdir -p /artifacts/reports
echo "all good" > /artifacts/summary.txt
dd if=/dev/urandom of=/artifacts/reports/data.bin bs=1024 count=200 2>/dev/null
sha256sum /artifacts/reports/data.bin
ln -s /etc/passwd /artifacts/passwd-link
"""


async def test_files_written_to_artifacts_are_collected_with_matching_sha256(
    engine: DockerEngine, job_image: str, run_id: str, store: ArtifactStore
) -> None:
    result, _ = await run(engine, spec(job_image, run_id, command=("sh", "-c", ARTIFACT_SCRIPT)))
    assert result.status is RunStatus.SUCCEEDED, result.output
    by_name = {artifact.name: artifact for artifact in result.artifacts}
    assert sorted(by_name) == ["reports/data.bin", "summary.txt"]
    for artifact in result.artifacts:
        with store.open(artifact.sha256) as blob:
            data = blob.read()
        assert hashlib.sha256(data).hexdigest() == artifact.sha256
        assert len(data) == artifact.size
    with store.open(by_name["summary.txt"].sha256) as blob:
        assert blob.read() == b"all good\n"
    inside = result.output.split()[0].decode()  # sha256sum as computed in the container
    assert by_name["reports/data.bin"].sha256 == inside
    assert by_name["reports/data.bin"].size == 200 * 1024
    assert result.artifact_problems == ("skipped 'passwd-link': not a regular file",)


async def test_artifacts_over_their_caps_are_not_collected_and_are_reported(
    engine: DockerEngine, job_image: str, run_id: str
) -> None:
    script = "for n in 1 2 3 4; do echo $n > /artifacts/file-$n; done"
    limits = ArtifactLimits(max_files=2)
    result, _ = await run(
        engine, spec(job_image, run_id, command=("sh", "-c", script), artifact_limits=limits)
    )
    assert result.status is RunStatus.SUCCEEDED
    assert len(result.artifacts) == 2
    assert result.artifact_problems == ("more than 2 files: collection stopped",)


def _count_collections(engine: DockerEngine, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each full read back (``get_archive``) of the artifacts directory."""
    calls: list[str] = []
    collect = engine._artifacts.collect

    async def counted(container_id: str, path: str, run_spec: RunSpec) -> Any:
        calls.append(container_id)
        return await collect(container_id, path, run_spec)

    monkeypatch.setattr(engine._artifacts, "collect", counted)
    return calls


async def test_an_untouched_artifacts_directory_is_not_read_back_and_a_written_one_is(
    engine: DockerEngine, job_image: str, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_collections(engine, monkeypatch)
    scripts = [
        "true",  # the first run of the image also checks that its /artifacts starts empty
        "echo one > /artifacts/one.txt",
        "true",
        "mkdir /artifacts/d && echo deep > /artifacts/d/deep.txt",
        "touch /artifacts/gone && rm /artifacts/gone",
        "true",
    ]
    names = []
    for script in scripts:
        result, _ = await run(engine, spec(job_image, run_id, command=("sh", "-c", script)))
        assert result.status is RunStatus.SUCCEEDED, result.output
        assert result.artifact_problems == ()
        names.append(sorted(artifact.name for artifact in result.artifacts))
    assert names == [[], ["one.txt"], [], ["d/deep.txt"], [], []]
    assert len(calls) == 3  # only the runs that changed the directory


async def test_files_the_image_ships_in_the_artifacts_path_are_still_collected(
    engine: DockerEngine, docker_api: Any, run_id: str, tmp_path: Path
) -> None:
    files = {
        "Dockerfile": f"FROM {BUSYBOX_IMAGE}\n"
        "RUN mkdir -p /artifacts/sub && echo shipped > /artifacts/sub/shipped.txt\n"
    }
    context = build_context_tar(files, tmp_path / "context.tar")
    digest = f"test-shipped-{uuid.uuid4().hex}"
    try:
        built = await engine.build(context, "Dockerfile", digest, {LABEL_JOB: "shipped"})
        found = []
        for _ in range(2):  # the second run knows the directory does not start empty
            result, _ = await run(engine, spec(built.image_id, run_id, command=("true",)))
            assert result.status is RunStatus.SUCCEEDED, result.output
            found.append([artifact.name for artifact in result.artifacts])
    finally:
        for image in docker_api.images(filters={"label": f"{LABEL_SOURCE_DIGEST}={digest}"}):
            docker_api.remove_image(image["Id"], force=True)
    assert found == [["sub/shipped.txt"], ["sub/shipped.txt"]]


# --- orphans --------------------------------------------------------------------------------


async def test_orphan_cleanup_removes_labelled_containers_no_run_owns(
    engine: DockerEngine, job_image: str, docker_api: Any
) -> None:
    owned, orphan = f"test-owned-{uuid.uuid4().hex[:8]}", f"test-orphan-{uuid.uuid4().hex[:8]}"
    # Scoped to this test's containers: others' runs may share this engine right now.
    scope = {"longshore-test.scope": uuid.uuid4().hex}
    created = []
    for run_label in (owned, orphan):
        container = docker_api.create_container(
            job_image,
            command=["sleep", "60"],
            labels={LABEL_RUN: run_label, **scope},
            host_config=docker_api.create_host_config(network_mode="none", init=True),
        )
        docker_api.start(container["Id"])
        created.append(container["Id"])
    try:
        removed = await engine.cleanup_orphans({owned}, only_labels=scope)
        assert removed == [created[1]]
        assert containers_of(docker_api, orphan) == []
        assert len(containers_of(docker_api, owned)) == 1
    finally:
        for container_id in created[:1]:
            docker_api.remove_container(container_id, force=True, v=True)
