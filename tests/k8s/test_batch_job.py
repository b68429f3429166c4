"""deploy/k8s/batch: an Indexed Job whose pod i runs `pantree batch` on shard i of N."""

from __future__ import annotations

import argparse

from services.cli import build_parser
from tests.k8s.manifests import Rendered

INDEX = "$(JOB_COMPLETION_INDEX)"
INDEX_ANNOTATION = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def _parse(args: list[str]) -> argparse.Namespace:
    """The command pod 0 runs, once Kubernetes expanded $(JOB_COMPLETION_INDEX)."""
    return build_parser().parse_args([arg.replace(INDEX, "0") for arg in args])


def test_each_index_scores_its_own_shard_into_its_own_file(rendered: dict[str, Rendered]) -> None:
    batch = rendered["batch"]
    (job,) = batch.of_kind("Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    container = batch.workloads[0].main
    args = _parse(container["args"])
    assert args.command == "batch"
    assert args.shard_count == spec["completions"], "one shard per completion index"
    assert container["args"][container["args"].index("--shard-index") + 1] == INDEX
    output = container["args"][container["args"].index("--output") + 1]
    assert INDEX in output, "each shard writes its own file"
    declared = {e["name"]: e for e in container["env"]}
    assert declared["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        INDEX_ANNOTATION
    ), "declared, so $(JOB_COMPLETION_INDEX) expands in the arguments"


def test_input_and_output_live_on_the_job_volume(rendered: dict[str, Rendered]) -> None:
    batch = rendered["batch"]
    workload = batch.workloads[0]
    args = _parse(workload.main["args"])
    mounts = {m["mountPath"]: m["name"] for m in workload.main["volumeMounts"]}
    volumes = {v["name"]: v for v in workload.pod["volumes"]}
    for path in (args.input, str(args.output)):
        mount = next(m for m in mounts if path.startswith(m + "/"))
        claim = volumes[mounts[mount]]["persistentVolumeClaim"]["claimName"]
        spec = batch.get("PersistentVolumeClaim", claim)["spec"]
        assert spec["accessModes"] == ["ReadWriteMany"], "shards run on several nodes at once"
    prepare = workload.pod["initContainers"][0]
    assert prepare["command"] == ["mkdir", "-p", str(args.output.parent)]
