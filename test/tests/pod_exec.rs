//! `kubectl exec` end to end: the real kubectl opens a WebSocket (`v5.channel.k8s.io`) to the
//! apiserver's `pods/exec`, which relays it to the real rkubelet, which runs the command in a
//! real container on containerd. Needs root and `make deps` (containerd, runc,
//! busybox-static, the venv's kubectl).

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rkube_tests::kubectl::Rkubectl;
use rkube_tests::node::{Containerd, Kubelet, TEST_IMAGE};
use rkube_tests::terminal::{Session, create_running};
use rkube_tests::{Api, Cluster, eventually, venv_bin};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn kubectl(kubeconfig: &std::path::Path, home: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(venv_bin("kubectl"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs (make deps installs it)");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(text.as_bytes()).expect("stdin written");
    }
    child.wait_with_output().expect("kubectl output")
}

/// A terminal session with the venv's kubectl.
fn session(kubeconfig: &std::path::Path, home: &std::path::Path) -> Session {
    let bin_dir = venv_bin("kubectl").parent().expect("venv bin").to_path_buf();
    Session { bin_dir, kubeconfig: kubeconfig.to_path_buf(), home: home.to_path_buf() }
}

#[tokio::test]
async fn kubectl_exec_runs_commands_in_a_running_container() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let containerd = Containerd::start().await.expect("containerd starts");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "exec-node").await.expect("kubelet starts");
    let api = Api::new(cluster.url());
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shell"},
        "spec": {"nodeName": "exec-node", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sleep", "3600"],
                "env": [{"name": "PAGE", "value": "v1"}], "workingDir": "/tmp"}]}});
    create_running(&api, &pod).await;
    let home = tempfile::tempdir().expect("home");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig");
    let run = |args: &[&str], stdin: Option<&str>| kubectl(&kubeconfig, home.path(), args, stdin);
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();

    // stdout and stderr come back apart, and the exit code is kubectl's.
    let out = run(&["exec", "shell", "--", "sh", "-c", "echo out; echo err >&2; exit 3"], None);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(3), "out\n".to_string()),
        "stderr: {}; kubelet log:\n{}\napiserver log:\n{}",
        text(&out.stderr),
        kubelet.log_tail(20),
        cluster.apiserver.log_tail(20)
    );
    assert!(text(&out.stderr).contains("err\n"), "{}", text(&out.stderr));

    // The container's environment and working directory.
    let out = run(&["exec", "shell", "-c", "main", "--", "sh", "-c", "echo $PAGE in $(pwd)"], None);
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "v1 in /tmp\n".to_string()), "{}", text(&out.stderr));

    // stdin (-i) reaches the command, and its end ends the command.
    let out = run(&["exec", "-i", "shell", "--", "sh", "-c", "wc -l; hostname"], Some("one\ntwo\nthree\n"));
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "3\nshell\n".to_string()), "{}", text(&out.stderr));

    // Bad requests get clear errors.
    let out = run(&["exec", "nobody", "--", "true"], None);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("not found"), "{}", text(&out.stderr));
    let out = run(&["exec", "shell", "-c", "other", "--", "true"], None);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("container other is not valid"), "{}", text(&out.stderr));
    let out = run(&["exec", "shell", "--", "no-such-command"], None);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // -it: a terminal, sized as the user's before the command starts, with TERM set, resized
    // when the user's terminal is (kubectl sends each size on the resize channel). kubectl
    // needs a terminal of its own for -t, so it runs under `script`; a helper in there resizes
    // that terminal once the test says so (after the first size was printed).
    let (screen, code) = session(&kubeconfig, home.path()).resize("kubectl", &home.path().join("resize-now"));
    assert!(screen.contains("/dev/pts/") && screen.contains("45 123\nxterm\n"), "{screen}");
    assert!(screen.contains("resized: 22 77\n"), "{screen}\nkubelet log:\n{}", kubelet.log_tail(20));
    assert_eq!(code, Some(5), "the command's exit code: {screen}");

    // kubectl cp both ways (exec + tar): a file and a directory into the pod, and back out.
    let local = home.path().join("upload");
    std::fs::create_dir_all(local.join("nested")).expect("dir");
    std::fs::write(local.join("nested/deep.txt"), "deep\n").expect("file");
    std::fs::write(home.path().join("note.txt"), "hello from the host\n").expect("file");
    let note = home.path().join("note.txt").display().to_string();
    let out = run(&["cp", &note, "shell:/tmp/note.txt"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(&["cp", &local.display().to_string(), "default/shell:/tmp/upload", "-c", "main"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(&["exec", "shell", "--", "cat", "/tmp/note.txt", "/tmp/upload/nested/deep.txt"], None);
    assert_eq!(text(&out.stdout), "hello from the host\ndeep\n", "{}", text(&out.stderr));
    let back = home.path().join("back");
    let out = run(&["cp", "shell:/tmp/upload", &back.display().to_string()], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(back.join("nested/deep.txt")).ok().as_deref(), Some("deep\n"));
    let copied = home.path().join("copied.txt");
    let out = run(&["cp", "shell:/tmp/note.txt", &copied.display().to_string()], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&copied).ok().as_deref(), Some("hello from the host\n"));

    // Without CNI the container has a network namespace of its own: port forwarding enters it.
    let out = run(&["exec", "shell", "--", "httpd", "-p", "127.0.0.1:8080", "-h", "/tmp"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut forward = Command::new(venv_bin("kubectl"))
        .args(["port-forward", "shell", ":8080"])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    let mut stdout = std::io::BufReader::new(forward.stdout.take().expect("stdout"));
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).expect("first line");
    // kubectl writes a line per connection: its stdout must stay open (a closed pipe kills it).
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let port: u16 = first.split(['-', ':', ' ']).filter_map(|part| part.parse().ok()).next().unwrap_or_default();
    let mut connection = std::net::TcpStream::connect(("127.0.0.1", port)).expect("kubectl listens");
    connection.write_all(b"GET /note.txt HTTP/1.0\r\n\r\n").expect("request");
    let mut response = String::new();
    let read = std::io::Read::read_to_string(&mut connection, &mut response);
    let _ = forward.kill();
    let stderr = forward.wait_with_output().map(|out| text(&out.stderr)).unwrap_or_default();
    assert!(
        read.is_ok() && response.ends_with("\r\n\r\nhello from the host\n"),
        "{first}: {read:?} {response:?}\n{stderr}\nkubelet log:\n{}",
        kubelet.log_tail(10)
    );

    // rkubectl exec speaks the same protocol.
    let rkubectl = Rkubectl::new(&cluster);
    let ran = rkubectl.run(&["exec", "shell", "--", "sh", "-c", "echo out; echo err >&2; exit 4"]).await;
    assert_eq!((ran.code, ran.stdout.as_str()), (Some(4), "out\n"), "{}", ran.describe());
    assert_eq!(ran.stderr, "err\ncommand terminated with exit code 4\n", "{}", ran.describe());
    let ran = rkubectl.run_with(&["exec", "-i", "pod/shell", "-c", "main", "--", "wc", "-c"], &[], Some("12345")).await;
    assert_eq!((ran.code, ran.stdout.trim()), (Some(0), "5"), "{}", ran.describe());
    let ran = rkubectl.run(&["exec", "nobody", "--", "true"]).await;
    assert_eq!(ran.code, Some(1), "{}", ran.describe());
    assert_eq!(ran.stderr.trim(), "Error from server (NotFound): pods \"nobody\" not found", "{}", ran.describe());
    let ran = rkubectl.run(&["exec", "shell"]).await;
    assert_ne!(ran.code, Some(0), "a command is required: {}", ran.describe());
}

#[tokio::test]
async fn kubectl_run_i_and_attach_reach_the_containers_own_process() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let containerd = Containerd::start().await.expect("containerd starts");
    let mut kubelet = Kubelet::start_containerd(&cluster, &containerd, "attach-node").await.expect("kubelet starts");
    let home = tempfile::tempdir().expect("home");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig");
    let run = |args: &[&str], stdin: Option<&str>| kubectl(&kubeconfig, home.path(), args, stdin);
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let api = Api::new(cluster.url());
    let on_node = r#"{"apiVersion": "v1", "spec": {"nodeName": "attach-node", "terminationGracePeriodSeconds": 1}}"#;

    // kubectl run -i --rm: stdin reaches the container's process, its end (stdinOnce) ends the
    // process, the output comes back, and the pod is deleted.
    let image = format!("--image={TEST_IMAGE}");
    let overrides = format!("--overrides={on_node}");
    let out = run(
        &["run", "upper", "-i", "--rm", "--restart=Never", &image, &overrides, "--", "tr", "a-z", "A-Z"],
        Some("hello attach\n"),
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}\nkubelet log:\n{}", text(&out.stderr), kubelet.log_tail(30));
    assert!(text(&out.stdout).contains("HELLO ATTACH\n"), "{}\n{}", text(&out.stdout), text(&out.stderr));
    eventually(WAIT, "the pod deleted (--rm)", || async {
        let (status, _) = api.get("/api/v1/namespaces/default/pods/upper").await;
        (status == 404).then_some(())
    })
    .await;

    // kubectl attach -i to a running pod that reads its stdin.
    let reader = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reader"},
        "spec": {"nodeName": "attach-node", "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": TEST_IMAGE, "stdin": true, "stdinOnce": true,
                "command": ["sh", "-c", "while read line; do echo got $line; echo oops $line >&2; done; echo bye"]}]}});
    create_running(&api, &reader).await;
    let out = run(&["attach", "-i", "reader"], Some("one\ntwo\n"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "got one\ngot two\nbye\n", "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("oops one\noops two\n"), "stderr apart: {}", text(&out.stderr));
    // What it printed is in its log too.
    eventually(WAIT, "the reader Succeeded", || async {
        let (_, pod) = api.get("/api/v1/namespaces/default/pods/reader").await;
        (pod["status"]["phase"] == "Succeeded").then_some(())
    })
    .await;
    let out = run(&["logs", "reader"], None);
    let mut lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    lines.sort();
    assert_eq!(lines, ["bye", "got one", "got two", "oops one", "oops two"], "{}", text(&out.stderr));

    // A restarted kubelet takes up the streams of a running container: what it writes is still
    // attached to and logged.
    let survivor = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "survivor"},
        "spec": {"nodeName": "attach-node", "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": TEST_IMAGE, "stdin": true, "stdinOnce": true,
                "command": ["sh", "-c", "echo before; while read line; do echo got $line; done"]}]}});
    create_running(&api, &survivor).await;
    kubelet.restart().await.expect("kubelet restarts");
    eventually(WAIT, "the restarted kubelet ready", || async {
        let reply = reqwest::get(format!("{}/readyz", kubelet.url())).await.ok()?;
        reply.status().is_success().then_some(())
    })
    .await;
    let out = run(&["attach", "-i", "survivor"], Some("after restart\n"));
    assert_eq!(text(&out.stdout), "got after restart\n", "{}\n{}", text(&out.stderr), kubelet.log_tail(20));
    let out = run(&["logs", "survivor"], None);
    assert_eq!(text(&out.stdout), "before\ngot after restart\n", "{}", text(&out.stderr));

    // kubectl run -it --rm: a shell in a terminal, typed into, its exit code kubectl's.
    let command = format!("exec kubectl run shell -it --rm --restart=Never {image} '{overrides}' -- sh");
    let (screen, code) =
        session(&kubeconfig, home.path()).run(&command, "try pressing enter", b"echo $((6 * 7)); exit 3\r", || {});
    assert!(screen.contains("\n42\n"), "{screen}\nkubelet log:\n{}", kubelet.log_tail(30));
    assert_eq!(code, Some(3), "the shell's exit code: {screen}");

    // A container without stdin or tty: attaching shows its output from then on (from its log),
    // stdout and stderr apart, until it ends.
    let script = "echo started; i=0; while [ ! -e /tmp/stop ] && [ $i -lt 300 ]; do echo tick $i; sleep 0.1; \
                  i=$((i+1)); done; echo bye >&2";
    let plain = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
        "spec": {"nodeName": "attach-node", "terminationGracePeriodSeconds": 1, "restartPolicy": "Never",
            "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sh", "-c", script]}]}});
    create_running(&api, &plain).await;
    let mut attach = Command::new(venv_bin("kubectl"))
        .args(["attach", "plain"])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl attach");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(attach.stdout.take().expect("stdout")));
    let seen: Vec<String> = lines.by_ref().take(3).map_while(Result::ok).collect();
    let out = run(&["exec", "plain", "--", "touch", "/tmp/stop"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let output = attach.wait_with_output().expect("kubectl attach ends with the container");
    assert!(seen.iter().all(|line| line.starts_with("tick ")), "{seen:?}");
    assert!(rest.iter().all(|line| line.starts_with("tick ")), "{rest:?}");
    assert_eq!(
        (output.status.code(), text(&output.stderr).contains("bye\n")),
        (Some(0), true),
        "{}",
        text(&output.stderr)
    );
}

#[tokio::test]
async fn kubectl_debug_adds_an_ephemeral_container_that_shares_the_targets_processes() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let containerd = Containerd::start().await.expect("containerd starts");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "debug-node").await.expect("kubelet starts");
    let api = Api::new(cluster.url());
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app"},
        "spec": {"nodeName": "debug-node", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sleep", "3600"]}]}});
    create_running(&api, &pod).await;
    let home = tempfile::tempdir().expect("home");
    let kubeconfig = cluster.write_kubeconfig(home.path()).expect("kubeconfig");
    let run = |args: &[&str]| kubectl(&kubeconfig, home.path(), args, None);
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let image = format!("--image={TEST_IMAGE}");

    // Not interactive: the debug container runs once, in the target's PID namespace (it sees
    // the target's `sleep`), and its output is its log.
    let out = run(&["debug", "app", &image, "--target=main", "-c", "probe", "--", "ps", "-o", "pid,args"]);
    assert_eq!(out.status.code(), Some(0), "{}\nkubelet log:\n{}", text(&out.stderr), kubelet.log_tail(20));
    let log = eventually(WAIT, "the debug container's output", || async {
        let out = run(&["logs", "app", "-c", "probe"]);
        let log = text(&out.stdout);
        log.contains("ps -o pid,args").then_some(log)
    })
    .await;
    assert!(log.contains("sleep 3600"), "the target's process is visible:\n{log}");
    let status = eventually(WAIT, "the debug container's status", || async {
        let (_, pod) = api.get("/api/v1/namespaces/default/pods/app").await;
        let status = pod["status"]["ephemeralContainerStatuses"][0].clone();
        status["state"]["terminated"].is_object().then_some(status)
    })
    .await;
    assert_eq!((status["name"].as_str(), status["ready"].as_bool()), (Some("probe"), Some(false)), "{status}");
    assert_eq!(status["state"]["terminated"]["exitCode"], 0, "{status}");

    // A debug container that keeps running is reached by name like any container: exec into
    // it, attach to its output.
    let ticker = [
        "debug",
        "app",
        &image,
        "--target=main",
        "-c",
        "ticker",
        "--",
        "sh",
        "-c",
        "while :; do echo tick; sleep 1; done",
    ];
    let out = run(&ticker);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let hello = eventually(WAIT, "exec into the ticker", || async {
        let out = run(&["exec", "app", "-c", "ticker", "--", "sh", "-c", "echo hello from the debugger"]);
        (out.status.code() == Some(0)).then(|| text(&out.stdout))
    })
    .await;
    assert_eq!(hello, "hello from the debugger\n");
    let attached = Command::new("timeout")
        .args(["5", venv_bin("kubectl").to_str().expect("UTF-8 path"), "attach", "app", "-c", "ticker"])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .expect("timeout runs kubectl");
    assert!(text(&attached.stdout).contains("tick\n"), "{}\n{}", text(&attached.stdout), text(&attached.stderr));

    // Interactive: a shell in a terminal, attached to by kubectl debug -it.
    let command = format!("exec kubectl debug app -it {image} --target=main -c shell -- sh");
    let (screen, _) =
        session(&kubeconfig, home.path()).run(&command, "try pressing enter", b"echo $((6 * 7)); exit\r", || {});
    assert!(screen.contains("\n42\n"), "{screen}\nkubelet log:\n{}", kubelet.log_tail(30));

    // The API's rules: ephemeral containers only come through the subresource, are only added,
    // and are refused on create.
    let path = "/api/v1/namespaces/default/pods/app/ephemeralcontainers";
    let merge = "application/merge-patch+json";
    let (code, body) = api.patch(path, merge, &json!({"spec": {"ephemeralContainers": []}})).await;
    assert_eq!(code.as_u16(), 422, "removing is refused: {body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("may not be removed")), "{body}");
    let extra = json!({"name": "third", "image": TEST_IMAGE, "targetContainerName": "nobody"});
    let (_, current) = api.get(path).await;
    let mut list = current["spec"]["ephemeralContainers"].as_array().cloned().unwrap_or_default();
    list.push(extra);
    let (code, body) = api.patch(path, merge, &json!({"spec": {"ephemeralContainers": list}})).await;
    assert_eq!(code.as_u16(), 422, "a target that is no container: {body}");
    let (code, body) = api
        .patch(
            "/api/v1/namespaces/default/pods/app",
            "application/strategic-merge-patch+json",
            &json!({"spec": {"ephemeralContainers": [{"name": "sneaky", "image": TEST_IMAGE}]}}),
        )
        .await;
    assert_eq!(code.as_u16(), 422, "not through the pod itself: {body}");
    let mut created = pod.clone();
    created["metadata"]["name"] = json!("born-with-one");
    created["spec"]["ephemeralContainers"] = json!([{"name": "e", "image": TEST_IMAGE}]);
    let (code, body) = api.post("/api/v1/namespaces/default/pods", &created).await;
    assert_eq!(code.as_u16(), 422, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("cannot be set on create")), "{body}");

    // --copy-to: a copy of the pod with the debug container added, the original untouched.
    let out = run(&[
        "debug",
        "app",
        "--copy-to=app-copy",
        "--same-node",
        &image,
        "-c",
        "copied",
        "--",
        "sh",
        "-c",
        "echo in the copy",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (_, copy) = api.get("/api/v1/namespaces/default/pods/app-copy").await;
    let names: Vec<_> =
        copy["spec"]["containers"].as_array().into_iter().flatten().map(|c| c["name"].clone()).collect();
    assert_eq!(names, [json!("main"), json!("copied")], "{copy}");
    eventually(WAIT, "the copy's debug container to run", || async {
        let out = run(&["logs", "app-copy", "-c", "copied"]);
        (text(&out.stdout) == "in the copy\n").then_some(())
    })
    .await;

    // node/: a pod on the node's network, processes and IPC, with the node's files at /host.
    let marker = tempfile::NamedTempFile::new().expect("marker");
    std::fs::write(marker.path(), "on the node\n").expect("marker written");
    let script = format!("cat /host{}; hostname; ps -o comm | grep -c containerd", marker.path().display());
    let out = run(&["debug", "node/debug-node", &image, "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let pod_name = text(&out.stdout)
        .split_whitespace()
        .find(|word| word.starts_with("node-debugger-"))
        .map(String::from)
        .unwrap_or_else(|| panic!("kubectl names the pod: {}", text(&out.stdout)));
    let logs = eventually(WAIT, "the node debugger to finish", || async {
        let (_, pod) = api.get(&format!("/api/v1/namespaces/default/pods/{pod_name}")).await;
        (pod["status"]["phase"] == "Succeeded").then(|| run(&["logs", &pod_name]))
    })
    .await;
    let node_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let lines: Vec<String> = text(&logs.stdout).lines().map(String::from).collect();
    assert_eq!(lines.first().map(String::as_str), Some("on the node"), "{lines:?}\n{}", kubelet.log_tail(20));
    assert_eq!(lines.get(1).map(String::as_str), Some(node_hostname.trim()), "{lines:?}");
    assert!(
        lines.get(2).and_then(|count| count.parse::<u32>().ok()).is_some_and(|n| n >= 1),
        "sees the node's containerd: {lines:?}"
    );
    let (_, pod) = api.get(&format!("/api/v1/namespaces/default/pods/{pod_name}")).await;
    assert_eq!(pod["status"]["podIP"], pod["status"]["hostIP"], "the node's IP: {}", pod["status"]);
}
