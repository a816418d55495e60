#!/usr/bin/env python3
"""Drives an rkube apiserver with the official Kubernetes Python client.

Usage: python_client.py SERVER_URL [STEP ...]

Runs every step when none is named. Steps:

  crud      create pods with CoreV1Api (the client sends no Content-Type and no
            apiVersion/kind), read one back, get 404 for a missing pod and 409
            for a duplicate, list with label selectors (exactly the matching
            pods), delete them.
  watch     watch pods with timeout_seconds from a list's resourceVersion while
            a thread creates, patches (strategic merge) and deletes a pod; the
            watch must see ADDED, then MODIFIED with the new label, then DELETED.
  dynamic   kubernetes.dynamic.DynamicClient: legacy discovery (/version, /apis,
            /api/v1, /apis/apps/v1), then create and list a Deployment.
  policy    SchedulingV1Api PriorityClass resolved into a pod's priority; a
            ResourceQuota refusing the pod over it (403 Forbidden, "exceeded
            quota"); PolicyV1Api PodDisruptionBudget; a pod evicted with
            create_namespaced_pod_eviction is gone.

Prints one line per check and "python client: all checks passed" at the end;
exits 1 with a message naming the mismatch on the first failure, 2 on bad usage.
test/tests/compat_python.rs runs it against a fresh cluster with .venv/bin/python.
"""

import json
import os
import sys
import tempfile
import threading
import time
import uuid

from kubernetes import client, dynamic, watch
from kubernetes.client.exceptions import ApiException

NAMESPACE = "default"
IMAGE = "busybox:1.37"


class Mismatch(Exception):
    """A check failed: what was expected and what came back."""


def check(condition, message):
    if not condition:
        raise Mismatch(message)
    print(f"  ok: {message}")


def pod(name, labels):
    # No api_version/kind on purpose: the client may send none, and the server
    # must take them from the URL.
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(name="main", image=IMAGE, command=["sleep", "3600"]),
            ]
        ),
    )


def status_reason(error):
    """The `reason` of the Status object in an ApiException's body, or None."""
    try:
        return json.loads(error.body or "{}").get("reason")
    except ValueError:
        return None


def step_crud(api):
    v1 = client.CoreV1Api(api)
    run = uuid.uuid4().hex[:8]
    match, other = f"py-match-{run}", f"py-other-{run}"

    created = v1.create_namespaced_pod(NAMESPACE, pod(match, {"app": "pycompat", "run": run}))
    check(created.metadata.name == match, f"create returned pod {created.metadata.name!r}")
    check(created.metadata.namespace == NAMESPACE, f"namespace taken from the URL ({created.metadata.namespace!r})")
    check(bool(created.metadata.uid), "created pod has a uid")
    check(bool(created.metadata.resource_version), "created pod has a resourceVersion")
    check(created.metadata.creation_timestamp is not None, "created pod has a creationTimestamp")
    check(created.kind in (None, "Pod"), f"created object kind is Pod ({created.kind!r})")
    check(created.spec.containers[0].image == IMAGE, "created pod keeps its image")
    v1.create_namespaced_pod(NAMESPACE, pod(other, {"app": "pycompat-other", "run": run}))

    read = v1.read_namespaced_pod(match, NAMESPACE)
    check(read.metadata.uid == created.metadata.uid, "read returns the created pod")

    try:
        v1.read_namespaced_pod(f"py-missing-{run}", NAMESPACE)
        raise Mismatch("reading a missing pod did not raise ApiException")
    except ApiException as error:
        check(error.status == 404, f"missing pod gives 404 (got {error.status})")
        check(status_reason(error) == "NotFound", f"404 body is a Status with reason NotFound ({error.body!r})")

    try:
        v1.create_namespaced_pod(NAMESPACE, pod(match, {"app": "pycompat", "run": run}))
        raise Mismatch("creating a duplicate pod did not raise ApiException")
    except ApiException as error:
        check(error.status == 409, f"duplicate create gives 409 (got {error.status})")
        check(status_reason(error) == "AlreadyExists", f"409 reason is AlreadyExists ({error.body!r})")

    def names(selector):
        return sorted(p.metadata.name for p in v1.list_namespaced_pod(NAMESPACE, label_selector=selector).items)

    got = names(f"app=pycompat,run={run}")
    check(got == [match], f"labelSelector app=pycompat,run={run} lists exactly {match} (got {got})")
    got = names(f"run={run}")
    check(got == sorted([match, other]), f"labelSelector run={run} lists both pods (got {got})")
    got = names(f"app!=pycompat,run={run}")
    check(got == [other], f"labelSelector app!=pycompat lists exactly {other} (got {got})")
    got = names(f"app in (pycompat),run={run}")
    check(got == [match], f"labelSelector 'app in (pycompat)' lists exactly {match} (got {got})")
    got = names("app=nothing-has-this-label")
    check(got == [], f"labelSelector matching nothing gives an empty list (got {got})")

    listed = v1.list_namespaced_pod(NAMESPACE)
    check(bool(listed.metadata.resource_version), "a list carries a resourceVersion")

    for name in (match, other):
        v1.delete_namespaced_pod(name, NAMESPACE)
    deadline = time.monotonic() + 30
    while names(f"run={run}") and time.monotonic() < deadline:
        time.sleep(0.2)
    check(names(f"run={run}") == [], "deleted pods are gone from the list")


def step_watch(api):
    v1 = client.CoreV1Api(api)
    run = uuid.uuid4().hex[:8]
    name = f"py-watched-{run}"
    selector = f"run={run}"

    start_rv = v1.list_namespaced_pod(NAMESPACE).metadata.resource_version
    check(bool(start_rv), f"list resourceVersion to watch from: {start_rv}")

    errors = []

    def change_pod():
        # The watch starts at start_rv, so these changes are seen even if they
        # happen before the watch request reaches the server.
        try:
            time.sleep(0.3)
            v1.create_namespaced_pod(NAMESPACE, pod(name, {"run": run}))
            time.sleep(0.3)
            v1.patch_namespaced_pod(name, NAMESPACE, {"metadata": {"labels": {"stage": "patched"}}})
            time.sleep(0.3)
            v1.delete_namespaced_pod(name, NAMESPACE)
        except Exception as error:  # reported by the main thread
            errors.append(error)

    worker = threading.Thread(target=change_pod, daemon=True)
    worker.start()

    seen = []
    stream = watch.Watch()
    started = time.monotonic()
    for event in stream.stream(
        v1.list_namespaced_pod,
        NAMESPACE,
        label_selector=selector,
        resource_version=start_rv,
        allow_watch_bookmarks=True,
        timeout_seconds=30,
        _request_timeout=60,
    ):
        kind = event["type"]
        if kind == "BOOKMARK":
            continue
        obj = event["object"]
        check(isinstance(obj, client.V1Pod), f"{kind} event object deserializes to V1Pod")
        check(obj.metadata.name == name, f"{kind} event is for {name}")
        check(bool(obj.metadata.resource_version), f"{kind} event object has a resourceVersion")
        labels = obj.metadata.labels or {}
        seen.append((kind, labels.get("stage")))
        if kind == "DELETED":
            stream.stop()
            break
    elapsed = time.monotonic() - started
    worker.join(timeout=10)

    if errors:
        raise Mismatch(f"the thread changing the pod failed: {errors[0]!r}")
    kinds = [kind for kind, _ in seen]
    check(kinds[:1] == ["ADDED"], f"first event is ADDED (events: {seen}, after {elapsed:.1f}s)")
    check(kinds[-1:] == ["DELETED"], f"last event is DELETED (events: {seen})")
    check(
        any(kind == "MODIFIED" and stage == "patched" for kind, stage in seen),
        f"a MODIFIED event carries the patched label (events: {seen})",
    )
    check(seen[0][1] is None, "the ADDED event has the pod as created (no stage label)")


def step_dynamic(api):
    # A private discovery cache: the default one in /tmp is keyed by host:port
    # only, so a later cluster on a reused port would read stale discovery.
    with tempfile.TemporaryDirectory(prefix="rkube-dynamic-") as cache_dir:
        dynamic_checks(dynamic.DynamicClient(api, cache_file=os.path.join(cache_dir, "discovery.json")))


def dynamic_checks(dyn):
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    check(deployments.namespaced, "discovery says Deployment is namespaced")
    check(deployments.name == "deployments", f"discovery names the resource {deployments.name!r}")
    pods = dyn.resources.get(api_version="v1", kind="Pod")
    check(pods.name == "pods", "discovery finds core v1 pods")

    run = uuid.uuid4().hex[:8]
    name = f"py-deploy-{run}"
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"run": run}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]},
            },
        },
    }
    created = deployments.create(body=body, namespace=NAMESPACE)
    check(created.metadata.name == name, f"dynamic create returned {created.metadata.name}")
    check(created.spec.replicas == 2, "created deployment keeps spec.replicas")
    listed = deployments.get(namespace=NAMESPACE, label_selector=f"run={run}")
    got = [item.metadata.name for item in listed.items]
    check(got == [name], f"dynamic list by label finds exactly the deployment (got {got})")
    deployments.delete(name=name, namespace=NAMESPACE)


def step_policy(api):
    core = client.CoreV1Api(api)
    scheduling = client.SchedulingV1Api(api)
    policy = client.PolicyV1Api(api)
    suffix = uuid.uuid4().hex[:6]
    klass = f"batch-{suffix}"
    scheduling.create_priority_class(
        client.V1PriorityClass(metadata=client.V1ObjectMeta(name=klass), value=4242)
    )
    prioritized = pod(f"prio-{suffix}", {"app": f"prio-{suffix}"})
    prioritized.spec.priority_class_name = klass
    created = core.create_namespaced_pod(NAMESPACE, prioritized)
    check(created.spec.priority == 4242, f"pod priority from PriorityClass {klass} is 4242 ({created.spec.priority})")

    namespace = f"quota-{suffix}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    core.create_namespaced_resource_quota(
        namespace,
        client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="pods"), spec=client.V1ResourceQuotaSpec(hard={"pods": "1"})
        ),
    )
    core.create_namespaced_pod(namespace, pod("first", {"app": "q"}))
    try:
        core.create_namespaced_pod(namespace, pod("second", {"app": "q"}))
        raise Mismatch("a pod over the quota was created")
    except ApiException as error:
        check(error.status == 403 and status_reason(error) == "Forbidden", f"over quota: 403 Forbidden ({error.status})")
        check("exceeded quota: pods" in (error.body or ""), "the message names the quota")
    used = core.read_namespaced_resource_quota("pods", namespace).status.used or {}
    check(used.get("pods") == "1", f"the quota's status.used counts the pod ({used})")

    budget = policy.create_namespaced_pod_disruption_budget(
        namespace,
        client.V1PodDisruptionBudget(
            metadata=client.V1ObjectMeta(name="q"),
            spec=client.V1PodDisruptionBudgetSpec(
                min_available=1, selector=client.V1LabelSelector(match_labels={"app": "other"})
            ),
        ),
    )
    check(budget.spec.min_available == 1, "PodDisruptionBudget created and read back")
    core.create_namespaced_pod_eviction(
        "first", namespace, client.V1Eviction(metadata=client.V1ObjectMeta(name="first", namespace=namespace))
    )
    try:
        core.read_namespaced_pod("first", namespace)
        raise Mismatch("the evicted pod is still there")
    except ApiException as error:
        check(error.status == 404, "the evicted pod is gone")


STEPS = {"crud": step_crud, "watch": step_watch, "dynamic": step_dynamic, "policy": step_policy}


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    server, names = argv[1].rstrip("/"), argv[2:] or list(STEPS)
    unknown = [name for name in names if name not in STEPS]
    if unknown:
        print(f"unknown step(s) {unknown}; known: {list(STEPS)}", file=sys.stderr)
        return 2

    configuration = client.Configuration(host=server)
    with client.ApiClient(configuration) as api:
        for name in names:
            print(f"step {name} against {server}")
            try:
                STEPS[name](api)
            except Mismatch as error:
                print(f"FAIL in step {name}: {error}", file=sys.stderr)
                return 1
            except ApiException as error:
                print(
                    f"FAIL in step {name}: unexpected ApiException {error.status} {error.reason}: {error.body}",
                    file=sys.stderr,
                )
                return 1
    print("python client: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
