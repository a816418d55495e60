#!/usr/bin/env python3
"""Drives an rkube apiserver with the official Kubernetes Python client.

Usage: python_client.py SERVER_URL [STEP ...]

Runs every API step when none is named (the node steps only when named). API steps need
no node; where one would report a pod Ready, the step does it itself through pods/status:

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
            quota") and counting the one it admitted.
  eviction  PolicyV1Api PodDisruptionBudget over two Ready pods: an eviction it
            cannot spare is 429 with Kubernetes' message and DisruptionBudget
            cause, and deletes nothing; a pod no budget selects goes freely;
            relaxed, the budget lets one go and refuses the next. Needs the
            controller-manager's disruption controller.
  limits    CoreV1Api LimitRange: defaulted on write, its defaults given to a
            new pod's container (and named in the limit-ranger annotation), a
            pod over its max refused 403 with Kubernetes' message.
  events    EventsV1Api: an events.k8s.io/v1 Event read back through CoreV1Api
            as the same object; listed by field selector in either version's
            field names (events.k8s.io/v1 refuses the core names with a 400).

Node steps, for a cluster with a real kubelet on containerd; the node's name and the
image to run come from RKUBE_COMPAT_NODE and RKUBE_COMPAT_IMAGE:

  metrics   CustomObjectsApi on metrics.k8s.io/v1beta1: NodeMetrics of the node,
            PodMetrics of a spinning pod (200m or more) in its namespace, by
            label and across namespaces; 404 for a pod that does not exist.
  attach    stream(connect_get_namespaced_pod_attach): lines written to a
            container's stdin come back on its stdout and stderr, closing stdin
            (v5 protocol) ends it; attaching to a container without stdin reads
            what it prints from then on.
  tty       stream(connect_get_namespaced_pod_exec, tty=True): the command runs
            on a terminal whose size is what the client sent on the resize
            channel (4), and changes when it sends another; exit code 5 comes
            back as the returncode.
  debug     patch_namespaced_pod_ephemeralcontainers adds a debug container
            targeting the pod's container: it sees the target's processes, ends,
            and its status and log say so; removing it is refused (422).

Prints one line per check and "python client: all checks passed" at the end;
exits 1 with a message naming the mismatch on the first failure, 2 on bad usage.
test/tests/compat_python.rs runs the API steps against fresh API-only clusters, and
test/tests/compat_python_streams.rs the node steps against a containerd node, both with
.venv/bin/python.
"""

import datetime
import json
import os
import sys
import tempfile
import threading
import time
import uuid

from kubernetes import client, dynamic, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

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


def status_body(error):
    """The Status object in an ApiException's body ({} when it is not JSON)."""
    try:
        return json.loads(error.body or "{}")
    except ValueError:
        return {}


def status_reason(error):
    """The `reason` of the Status object in an ApiException's body, or None."""
    return status_body(error).get("reason")


def refused(call, code, what):
    """Calls call(), which must raise ApiException with HTTP status `code`; returns its Status."""
    try:
        call()
    except ApiException as error:
        check(error.status == code, f"{what}: {code} (got {error.status}: {error.body})")
        return status_body(error)
    raise Mismatch(f"{what}: the call succeeded, expected {code}")


def wait_for(what, probe, timeout=60):
    """Calls probe() until it returns something truthy, and returns that."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise Mismatch(f"{what}: not within {timeout}s")
        time.sleep(0.2)


def gone(core, namespace, name):
    """Waits until the pod is deleted (404)."""

    def missing():
        try:
            core.read_namespaced_pod(name, namespace)
            return False
        except ApiException as error:
            if error.status != 404:
                raise
            return True

    check(wait_for(f"pod {namespace}/{name} deleted", missing), f"pod {namespace}/{name} is gone")


def new_namespace(core, prefix):
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


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
    suffix = uuid.uuid4().hex[:6]
    klass = f"batch-{suffix}"
    scheduling.create_priority_class(
        client.V1PriorityClass(metadata=client.V1ObjectMeta(name=klass), value=4242)
    )
    prioritized = pod(f"prio-{suffix}", {"app": f"prio-{suffix}"})
    prioritized.spec.priority_class_name = klass
    created = core.create_namespaced_pod(NAMESPACE, prioritized)
    check(created.spec.priority == 4242, f"pod priority from PriorityClass {klass} is 4242 ({created.spec.priority})")

    namespace = new_namespace(core, "quota")
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


def report_ready(core, namespace, name):
    """Reports the pod Running and Ready through pods/status (a strategic merge patch), as
    its kubelet would once the containers passed their readiness probes."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": now} for kind in ("Ready", "ContainersReady")
    ]
    body = {"status": {"phase": "Running", "conditions": conditions}}
    patched = core.patch_namespaced_pod_status(name, namespace, body)
    ready = [c.status for c in patched.status.conditions or [] if c.type == "Ready"]
    check(patched.status.phase == "Running" and ready == ["True"], f"pod {name} reported Running and Ready")


def step_eviction(api):
    core, policy = client.CoreV1Api(api), client.PolicyV1Api(api)
    namespace = new_namespace(core, "evict")
    for name, app in (("a", "web"), ("b", "web"), ("loner", "other")):
        core.create_namespaced_pod(namespace, pod(name, {"app": app}))
        report_ready(core, namespace, name)
    created = policy.create_namespaced_pod_disruption_budget(
        namespace,
        client.V1PodDisruptionBudget(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1PodDisruptionBudgetSpec(
                min_available=2, selector=client.V1LabelSelector(match_labels={"app": "web"})
            ),
        ),
    )
    check(created.spec.min_available == 2, "PodDisruptionBudget web (minAvailable 2 of app=web) created")

    def budget(healthy, allowed):
        """The budget once the disruption controller has counted `healthy` pods for its spec."""

        def counted():
            read = policy.read_namespaced_pod_disruption_budget("web", namespace)
            status = read.status
            current = (
                status is not None
                and status.observed_generation == read.metadata.generation
                and (status.current_healthy, status.disruptions_allowed) == (healthy, allowed)
            )
            return read if current else None

        return wait_for(f"budget web: {healthy} healthy, {allowed} disruptions allowed", counted)

    def evict(name):
        eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace))
        return core.create_namespaced_pod_eviction(name, namespace, eviction, _preload_content=False)

    def refused_by_budget(name, needs, has):
        body = refused(lambda: evict(name), 429, f"evicting {name}, which the budget cannot spare")
        check(body.get("reason") == "TooManyRequests", f"reason TooManyRequests ({body})")
        message = "Cannot evict pod as it would violate the pod's disruption budget."
        check(body.get("message") == message, f"Kubernetes' message ({body.get('message')!r})")
        cause = {
            "reason": "DisruptionBudget",
            "message": f"The disruption budget web needs {needs} healthy pods and has {has} currently",
        }
        causes = (body.get("details") or {}).get("causes")
        check(causes == [cause], f"the cause names the budget's numbers ({causes})")
        still = core.read_namespaced_pod(name, namespace)
        check(still.metadata.deletion_timestamp is None, f"the refused eviction left {name} alone")

    counted = budget(2, 0)
    status = counted.status
    check((status.desired_healthy, status.expected_pods) == (2, 2), f"2 of 2 pods are needed ({status})")
    refused_by_budget("a", 2, 2)

    reply = evict("loner")
    body = json.loads(reply.data)
    check(
        (reply.status, body.get("status")) == (201, "Success"),
        f"a pod no budget selects is evicted: {reply.status} {body}",
    )
    gone(core, namespace, "loner")

    relaxed = policy.patch_namespaced_pod_disruption_budget("web", namespace, {"spec": {"minAvailable": 1}})
    check(relaxed.spec.min_available == 1, "the budget relaxed to minAvailable 1")
    budget(2, 1)
    reply = evict("a")
    check(reply.status == 201, f"the budget spares one pod: 201 ({reply.status})")
    gone(core, namespace, "a")
    taken = policy.read_namespaced_pod_disruption_budget("web", namespace).status
    check(taken.disruptions_allowed == 0, f"the eviction took the one disruption allowed ({taken.disruptions_allowed})")
    budget(1, 0)
    refused_by_budget("b", 1, 1)


def step_limits(api):
    core = client.CoreV1Api(api)
    namespace = new_namespace(core, "limits")
    limits = client.V1LimitRange(
        metadata=client.V1ObjectMeta(name="cpu-mem"),
        spec=client.V1LimitRangeSpec(
            limits=[
                client.V1LimitRangeItem(
                    type="Container",
                    max={"cpu": "1"},
                    default={"cpu": "500m", "memory": "256Mi"},
                    default_request={"memory": "128Mi"},
                )
            ]
        ),
    )
    created = core.create_namespaced_limit_range(namespace, limits)
    item = created.spec.limits[0]
    check(
        item.default_request == {"cpu": "500m", "memory": "128Mi"},
        f"the cpu request defaults to the default limit ({item.default_request})",
    )
    listed = [r.metadata.name for r in core.list_namespaced_limit_range(namespace).items]
    check(listed == ["cpu-mem"], f"listed ({listed})")

    bare = core.create_namespaced_pod(namespace, pod("bare", {"app": "limits"}))
    resources = bare.spec.containers[0].resources
    check(
        resources.limits == {"cpu": "500m", "memory": "256Mi"},
        f"the container got the default limits ({resources.limits})",
    )
    check(resources.requests == {"cpu": "500m", "memory": "128Mi"}, f"and the default requests ({resources.requests})")
    annotation = (bare.metadata.annotations or {}).get("kubernetes.io/limit-ranger", "")
    expected = "LimitRanger plugin set: cpu, memory request for container main; cpu, memory limit for container main"
    check(annotation == expected, f"the pod names what was set ({annotation!r})")
    read = core.read_namespaced_pod("bare", namespace).spec.containers[0].resources
    check(read.limits == resources.limits and read.requests == resources.requests, "stored as returned")

    greedy = pod("greedy", {"app": "limits"})
    greedy.spec.containers[0].resources = client.V1ResourceRequirements(limits={"cpu": "2"})
    body = refused(lambda: core.create_namespaced_pod(namespace, greedy), 403, "a pod over the max")
    check(body.get("reason") == "Forbidden", f"reason Forbidden ({body})")
    message = 'pods "greedy" is forbidden: maximum cpu usage per Container is 1, but limit is 2'
    check(body.get("message") == message, f"Kubernetes' message ({body.get('message')!r})")
    names = [p.metadata.name for p in core.list_namespaced_pod(namespace).items]
    check(names == ["bare"], f"the refused pod was not created ({names})")


def step_events(api):
    core, events = client.CoreV1Api(api), client.EventsV1Api(api)
    run = uuid.uuid4().hex[:8]
    regarding_name, name = f"web-{run}", f"web-{run}.scaled"
    when = datetime.datetime(2026, 12, 6, 10, 0, 0, 123456, tzinfo=datetime.timezone.utc)
    written = events.create_namespaced_event(
        NAMESPACE,
        client.EventsV1Event(
            metadata=client.V1ObjectMeta(name=name),
            event_time=when,
            reporting_controller="example.com/scaler",
            reporting_instance="scaler-0",
            action="Scale",
            reason="Scaled",
            type="Normal",
            note="scaled up to 3",
            regarding=client.V1ObjectReference(
                kind="Deployment", name=regarding_name, namespace=NAMESPACE, api_version="apps/v1"
            ),
        ),
    )
    check(written.metadata.name == name and bool(written.metadata.uid), f"EventsV1Api created {name}")
    check(written.event_time == when, f"eventTime kept to the microsecond ({written.event_time})")

    core_event = core.read_namespaced_event(name, NAMESPACE)
    check(core_event.metadata.uid == written.metadata.uid, "CoreV1Api reads the same object (same uid)")
    check(
        core_event.metadata.resource_version == written.metadata.resource_version,
        "at the same resourceVersion",
    )
    involved = core_event.involved_object
    check(
        (involved.kind, involved.name, involved.namespace, involved.api_version)
        == ("Deployment", regarding_name, NAMESPACE, "apps/v1"),
        f"regarding is involvedObject ({involved})",
    )
    check(
        (core_event.reason, core_event.message, core_event.type, core_event.action)
        == ("Scaled", "scaled up to 3", "Normal", "Scale"),
        "reason, note (as message), type and action "
        f"({core_event.reason}, {core_event.message}, {core_event.type}, {core_event.action})",
    )
    check(
        (core_event.reporting_component, core_event.reporting_instance) == ("example.com/scaler", "scaler-0"),
        "reportingController is reportingComponent "
        f"({core_event.reporting_component}, {core_event.reporting_instance})",
    )
    check(core_event.event_time == when, f"the same eventTime ({core_event.event_time})")

    # Another event about something else, which the selectors must leave out.
    events.create_namespaced_event(
        NAMESPACE,
        client.EventsV1Event(
            metadata=client.V1ObjectMeta(name=f"other-{run}.pulled"),
            event_time=when,
            reporting_controller="kubelet",
            reporting_instance="node-1",
            action="Pull",
            reason="Pulled",
            type="Normal",
            note="pulled",
            regarding=client.V1ObjectReference(kind="Pod", name=f"other-{run}", namespace=NAMESPACE),
        ),
    )
    by_regarding = events.list_namespaced_event(NAMESPACE, field_selector=f"regarding.name={regarding_name}")
    got = [(e.metadata.name, e.note) for e in by_regarding.items]
    check(got == [(name, "scaled up to 3")], f"events.k8s.io list by regarding.name finds exactly it ({got})")
    by_reason = events.list_namespaced_event(NAMESPACE, field_selector="reason=Scaled,regarding.kind=Deployment")
    got = [e.metadata.name for e in by_reason.items if e.metadata.name.endswith(run + ".scaled")]
    check(got == [name], f"and by reason and regarding.kind ({got})")
    by_involved = core.list_namespaced_event(NAMESPACE, field_selector=f"involvedObject.name={regarding_name}")
    got = [(e.metadata.name, e.message) for e in by_involved.items]
    check(got == [(name, "scaled up to 3")], f"core v1 list by involvedObject.name finds it too ({got})")
    body = refused(
        lambda: events.list_namespaced_event(NAMESPACE, field_selector=f"involvedObject.name={regarding_name}"),
        400,
        "events.k8s.io/v1 with the core field name",
    )
    message = "field label not supported: involvedObject.name"
    check(body.get("message") == message, f"says which ({body.get('message')!r})")


def node_and_image():
    """The node to run pods on and the image to run, from the environment (see the docstring)."""
    node, image = os.environ.get("RKUBE_COMPAT_NODE"), os.environ.get("RKUBE_COMPAT_IMAGE")
    if not node or not image:
        raise Mismatch("node steps need RKUBE_COMPAT_NODE and RKUBE_COMPAT_IMAGE in the environment")
    return node, image


def node_pod(name, script, **container):
    """A pod on the node, its one container `main` running `sh -c script`."""
    node, image = node_and_image()
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name}),
        spec=client.V1PodSpec(
            node_name=node,
            restart_policy="Never",
            termination_grace_period_seconds=1,
            containers=[client.V1Container(name="main", image=image, command=["sh", "-c", script], **container)],
        ),
    )


def start(core, body):
    """Creates the pod and waits until it is Running."""
    name = body.metadata.name
    core.create_namespaced_pod(NAMESPACE, body)

    def running():
        phase = core.read_namespaced_pod(name, NAMESPACE).status.phase
        if phase in ("Succeeded", "Failed"):
            raise Mismatch(f"pod {name} ended ({phase}) before it was seen Running")
        return phase == "Running"

    wait_for(f"pod {name} Running", running, timeout=90)


def phase_becomes(core, name, phase):
    wait_for(f"pod {name} {phase}", lambda: core.read_namespaced_pod(name, NAMESPACE).status.phase == phase)


def nanocores(quantity):
    """A CPU quantity as metrics.k8s.io writes it (`12345n`, `250m`, `1`) in nanocores."""
    for suffix, scale in (("n", 1), ("u", 10**3), ("m", 10**6)):
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * scale
    return int(quantity) * 10**9


def memory_bytes(quantity):
    """A memory quantity (`1234Ki`, `5Mi`, `1024`) in bytes."""
    for suffix, scale in (("Ki", 2**10), ("Mi", 2**20), ("Gi", 2**30)):
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * scale
    return int(quantity)


def step_metrics(api):
    node, _ = node_and_image()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    run = uuid.uuid4().hex[:6]
    busy, idle = f"busy-{run}", f"idle-{run}"
    start(core, node_pod(busy, "while :; do :; done"))
    start(core, node_pod(idle, "while :; do sleep 3600; done"))
    group, version = "metrics.k8s.io", "v1beta1"

    nodes = custom.list_cluster_custom_object(group, version, "nodes")
    check(
        (nodes.get("kind"), nodes.get("apiVersion")) == ("NodeMetricsList", "metrics.k8s.io/v1beta1"),
        f"list_cluster_custom_object(nodes) is a NodeMetricsList ({nodes.get('kind')}, {nodes.get('apiVersion')})",
    )
    listed = [item for item in nodes.get("items", []) if item["metadata"]["name"] == node]
    check(len(listed) == 1, f"it lists node {node}")
    usage = listed[0]["usage"]
    check(nanocores(usage["cpu"]) > 0 and memory_bytes(usage["memory"]) > 0, f"with its usage ({usage})")
    single = custom.get_cluster_custom_object(group, version, "nodes", node)
    check(
        (single["kind"], single["metadata"]["name"]) == ("NodeMetrics", node),
        "get_cluster_custom_object(nodes, name)",
    )

    def measured(name):
        try:
            return custom.get_namespaced_custom_object(group, version, NAMESPACE, "pods", name)
        except ApiException as error:
            if error.status == 404:  # not measured yet
                return None
            raise

    def spinning():
        metrics = measured(busy)
        return metrics if metrics and nanocores(metrics["containers"][0]["usage"]["cpu"]) >= 200_000_000 else None

    metrics = wait_for(f"PodMetrics of {busy} showing a good part of a core", spinning)
    check((metrics["kind"], metrics["apiVersion"]) == ("PodMetrics", "metrics.k8s.io/v1beta1"), "a PodMetrics")
    check(
        (metrics["metadata"]["name"], metrics["metadata"]["namespace"]) == (busy, NAMESPACE),
        f"named for the pod ({metrics['metadata']})",
    )
    container = metrics["containers"][0]
    check(container["name"] == "main", f"per container ({container})")
    check(memory_bytes(container["usage"]["memory"]) > 0, f"with its memory ({container['usage']})")
    check(bool(metrics.get("timestamp")) and bool(metrics.get("window")), "with a timestamp and window")
    sleeping = wait_for(f"PodMetrics of {idle}", lambda: measured(idle))
    cpu = nanocores(sleeping["containers"][0]["usage"]["cpu"])
    check(cpu < 50_000_000, f"the sleeping pod next to no CPU ({cpu}n)")

    by_label = custom.list_namespaced_custom_object(group, version, NAMESPACE, "pods", label_selector=f"app={idle}")
    names = [item["metadata"]["name"] for item in by_label["items"]]
    check(by_label["kind"] == "PodMetricsList" and names == [idle], f"listed by label: exactly {idle} ({names})")
    everywhere = custom.list_cluster_custom_object(group, version, "pods")
    found = sorted(
        item["metadata"]["name"] for item in everywhere["items"] if item["metadata"]["namespace"] == NAMESPACE
    )
    check(busy in found and idle in found, f"across namespaces, both pods ({found})")
    body = refused(
        lambda: custom.get_namespaced_custom_object(group, version, NAMESPACE, "pods", f"nobody-{run}"),
        404,
        "metrics of a pod that does not exist",
    )
    check(body.get("reason") == "NotFound", f"reason NotFound ({body})")
    # The spinning pod would slow the steps after this one.
    core.delete_namespaced_pod(busy, NAMESPACE)


def step_attach(api):
    core = client.CoreV1Api(api)
    run = uuid.uuid4().hex[:6]
    reader = f"reader-{run}"
    script = "while read line; do echo got $line; echo oops $line >&2; done; echo bye"
    start(core, node_pod(reader, script, stdin=True, stdin_once=True))
    session = stream(
        core.connect_get_namespaced_pod_attach,
        reader,
        NAMESPACE,
        stdin=True,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    check(session.subprotocol == "v5.channel.k8s.io", f"attach speaks v5.channel.k8s.io ({session.subprotocol})")
    session.write_stdin("one\n")
    line = session.readline_stdout(timeout=30)
    check(line == "got one", f"a line written to stdin comes back on stdout ({line!r})")
    line = session.readline_stderr(timeout=30)
    check(line == "oops one", f"and on stderr, apart ({line!r})")
    session.write_stdin("two\n")
    line = session.readline_stdout(timeout=30)
    check(line == "got two", f"the next one too ({line!r})")
    session.close_channel(0)
    line = session.readline_stdout(timeout=30)
    check(line == "bye", f"closing stdin ends the container's input (stdinOnce) ({line!r})")
    session.run_forever(timeout=30)
    check(not session.is_open(), "the session ends with the container")
    phase_becomes(core, reader, "Succeeded")
    log = sorted(core.read_namespaced_pod_log(reader, NAMESPACE).splitlines())
    check(log == ["bye", "got one", "got two", "oops one", "oops two"], f"what it printed is in its log ({log})")

    ticker = f"ticker-{run}"
    script = (
        "i=0; while [ ! -e /tmp/stop ] && [ $i -lt 600 ]; do echo tick $i; sleep 0.1; i=$((i+1)); done; "
        "echo bye >&2"
    )
    start(core, node_pod(ticker, script))
    session = stream(
        core.connect_get_namespaced_pod_attach,
        ticker,
        NAMESPACE,
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    lines = [session.readline_stdout(timeout=30) for _ in range(3)]
    ticks = [int(line.split()[1]) for line in lines if line.startswith("tick ")]
    check(
        len(ticks) == 3 and ticks == list(range(ticks[0], ticks[0] + 3)),
        f"attached to a container without stdin: what it prints from then on ({lines})",
    )
    stopped = stream(
        core.connect_get_namespaced_pod_exec,
        ticker,
        NAMESPACE,
        command=["sh", "-c", "touch /tmp/stop && echo stopping"],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
    )
    check(stopped == "stopping\n", f"exec beside the attach ({stopped!r})")
    session.run_forever(timeout=30)
    check(not session.is_open(), "the attach ends when the container does")
    rest = session.read_stderr()
    check(rest == "bye\n", f"its last words on stderr ({rest!r})")


def step_tty(api):
    core = client.CoreV1Api(api)
    name = f"shell-{uuid.uuid4().hex[:6]}"
    start(core, node_pod(name, "exec sleep 3600"))
    remote = (
        'tty; i=0; while [ "$(stty size)" != "45 123" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; '
        "echo size: $(stty size); read line; i=0; "
        'while [ "$(stty size)" != "22 77" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; '
        "echo resized: $(stty size); exit 5"
    )
    session = stream(
        core.connect_get_namespaced_pod_exec,
        name,
        NAMESPACE,
        command=["sh", "-c", remote],
        stdin=True,
        stdout=True,
        stderr=False,
        tty=True,
        _preload_content=False,
    )
    session.write_channel(4, json.dumps({"Width": 123, "Height": 45}))

    def line_starting(prefix):
        deadline = time.monotonic() + 30
        seen = []
        while time.monotonic() < deadline:
            line = session.readline_stdout(timeout=deadline - time.monotonic()).rstrip("\r")
            seen.append(line)
            if line.startswith(prefix):
                return line
            if not session.is_open():
                break
        raise Mismatch(f"no line starting {prefix!r} on the terminal (saw {seen})")

    terminal = line_starting("/dev/")
    check(terminal.startswith("/dev/pts/"), f"the command runs on a terminal ({terminal})")
    size = line_starting("size:")
    check(size == "size: 45 123", f"sized as the client said on the resize channel ({size})")
    session.write_channel(4, json.dumps({"Width": 77, "Height": 22}))
    session.write_stdin("go\n")
    resized = line_starting("resized:")
    check(resized == "resized: 22 77", f"and resized when it sends another size ({resized})")
    session.run_forever(timeout=30)
    check(session.returncode == 5, f"the exit code comes back as returncode ({session.returncode})")


def step_debug(api):
    core = client.CoreV1Api(api)
    name = f"app-{uuid.uuid4().hex[:6]}"
    start(core, node_pod(name, "exec sleep 3600"))
    _, image = node_and_image()
    debugger = {
        "name": "debugger",
        "image": image,
        "targetContainerName": "main",
        "command": ["sh", "-c", "ps -o pid,args; echo debug done"],
    }
    body = {"spec": {"ephemeralContainers": [debugger]}}
    patched = core.patch_namespaced_pod_ephemeralcontainers(name, NAMESPACE, body)
    added = [(c.name, c.target_container_name, c.image) for c in patched.spec.ephemeral_containers or []]
    check(added == [("debugger", "main", image)], f"the patch adds the ephemeral container ({added})")
    read = core.read_namespaced_pod_ephemeralcontainers(name, NAMESPACE)
    check([c.name for c in read.spec.ephemeral_containers or []] == ["debugger"], "read back through the subresource")

    def ended():
        statuses = core.read_namespaced_pod(name, NAMESPACE).status.ephemeral_container_statuses or []
        return statuses[0] if statuses and statuses[0].state and statuses[0].state.terminated else None

    status = wait_for("the debug container's status to say it ended", ended, timeout=90)
    check(
        (status.name, status.ready, status.state.terminated.exit_code) == ("debugger", False, 0),
        "ephemeralContainerStatuses: debugger, not ready, exit code 0 "
        f"({status.name}, {status.ready}, {status.state.terminated.exit_code})",
    )
    log = core.read_namespaced_pod_log(name, NAMESPACE, container="debugger")
    check("sleep 3600" in log, f"it sees the target's processes ({log!r})")
    check(log.endswith("debug done\n"), f"its output is its log ({log!r})")
    target = core.read_namespaced_pod(name, NAMESPACE).status
    check(
        target.phase == "Running" and target.container_statuses[0].restart_count == 0,
        "the pod's own container runs on, untouched",
    )
    body = refused(
        lambda: core.patch_namespaced_pod_ephemeralcontainers(
            name, NAMESPACE, [{"op": "remove", "path": "/spec/ephemeralContainers/0"}]
        ),
        422,
        "removing an ephemeral container",
    )
    expected = (
        f'Pod "{name}" is invalid: spec.ephemeralContainers: Forbidden: '
        'existing ephemeral containers "debugger" may not be removed'
    )
    check(
        (body.get("reason"), body.get("message")) == ("Invalid", expected),
        f"Kubernetes' words ({body.get('message')!r})",
    )


STEPS = {
    "crud": step_crud,
    "watch": step_watch,
    "dynamic": step_dynamic,
    "policy": step_policy,
    "eviction": step_eviction,
    "limits": step_limits,
    "events": step_events,
}
NODE_STEPS = {"metrics": step_metrics, "attach": step_attach, "tty": step_tty, "debug": step_debug}


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    server, names = argv[1].rstrip("/"), argv[2:] or list(STEPS)
    steps = {**STEPS, **NODE_STEPS}
    unknown = [name for name in names if name not in steps]
    if unknown:
        print(f"unknown step(s) {unknown}; known: {list(steps)}", file=sys.stderr)
        return 2

    configuration = client.Configuration(host=server)
    with client.ApiClient(configuration) as api:
        for name in names:
            print(f"step {name} against {server}")
            try:
                steps[name](api)
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
