//! rkubectl's streaming verbs end to end on real containerd: `exec -it` in a terminal (raw
//! mode, the terminal's size, a resize, the exit code), `attach` (stdin, output from a
//! running process, refusal of a finished pod) and `run -i/-it --rm` (stdin to the container's
//! own process, a shell in a terminal, the exit code, the pod deleted). rkubectl needs a
//! terminal of its own for `-t`, so those run under `script`, as pod_exec.rs runs kubectl.
//! Needs root and `make deps` (containerd, runc, busybox-static, bsdutils' script).

use std::time::Duration;

use rkube_tests::kubectl::Rkubectl;
use rkube_tests::node::{Containerd, Kubelet, TEST_IMAGE};
use rkube_tests::terminal::{Session, create_running};
use rkube_tests::{Api, Cluster, eventually};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// A terminal session with this test's rkubectl.
fn session(k: &Rkubectl<'_>) -> Session {
    let bin_dir = k.program().parent().expect("the binary's directory").to_path_buf();
    Session { bin_dir, kubeconfig: k.kubeconfig().to_path_buf(), home: k.dir().to_path_buf() }
}

/// Runs shell `command` (rkubectl on its PATH) in a terminal of its own ([`Session::run`]).
fn in_terminal(
    k: &Rkubectl<'_>,
    command: &str,
    ready: &str,
    keys: &[u8],
    on_ready: impl FnOnce(),
) -> (String, Option<i32>) {
    session(k).run(command, ready, keys, on_ready)
}

#[tokio::test]
async fn rkubectl_exec_it_gives_the_command_a_terminal_of_the_users_size() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let containerd = Containerd::start().await.expect("containerd starts");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "tty-node").await.expect("kubelet starts");
    let api = Api::new(cluster.url());
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shell"},
        "spec": {"nodeName": "tty-node", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sleep", "3600"]}]}});
    create_running(&api, &pod).await;
    let k = Rkubectl::new(&cluster);

    // -it in a terminal of 45 rows × 123 columns: the command sees a terminal of that size and
    // TERM; the terminal is resized to 22 × 77 once the first size is printed, and the command
    // sees that too; its exit code is rkubectl's.
    let (screen, code) = session(&k).resize("rkubectl", &k.dir().join("resize-now"));
    assert!(screen.contains("/dev/pts/") && screen.contains("45 123\nxterm\n"), "{screen}\n{}", kubelet.log_tail(20));
    assert!(screen.contains("resized: 22 77\n"), "{screen}\nkubelet log:\n{}", kubelet.log_tail(20));
    assert_eq!(code, Some(5), "the command's exit code: {screen}");
    assert!(screen.contains("command terminated with exit code 5"), "{screen}");

    // Keys go to the remote terminal as typed (raw mode): Ctrl-C interrupts the remote command,
    // not rkubectl, and the shell goes on.
    let command = "exec rkubectl exec -it shell -- sh -c 'trap \"echo interrupted; exit 9\" INT; echo ready; \
                   while :; do sleep 0.1; done'";
    let (screen, code) = in_terminal(&k, command, "ready", b"\x03", || {});
    assert!(screen.contains("interrupted"), "{screen}");
    assert_eq!(code, Some(9), "{screen}");

    // -t without -i, or with a stdin that is not a terminal, runs without one, as kubectl does.
    let ran = k.run(&["exec", "-t", "shell", "--", "sh", "-c", "tty; true"]).await;
    assert_eq!((ran.code, ran.stdout.as_str()), (Some(0), "not a tty\n"), "{}", ran.describe());
    let ran = k.run_with(&["exec", "-it", "shell", "--", "sh", "-c", "tty; cat"], &[], Some("piped\n")).await;
    assert_eq!((ran.code, ran.stdout.as_str()), (Some(0), "not a tty\npiped\n"), "{}", ran.describe());
    assert_eq!(ran.stderr, "Unable to use a TTY - input is not a terminal or the right kind of file\n");
}

#[tokio::test]
async fn rkubectl_attach_and_run_i_reach_the_containers_own_process() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let containerd = Containerd::start().await.expect("containerd starts");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "attach-node").await.expect("kubelet starts");
    let api = Api::new(cluster.url());
    let k = Rkubectl::new(&cluster);
    let image = format!("--image={TEST_IMAGE}");
    let overrides = r#"--overrides={"spec": {"nodeName": "attach-node", "terminationGracePeriodSeconds": 1}}"#;

    // run -i --rm: stdin reaches the container's process, its end ends the process, the output
    // comes back, and the pod is deleted.
    let ran = k
        .run_with(
            &["run", "upper", "-i", "--rm", "--restart=Never", &image, overrides, "--", "tr", "a-z", "A-Z"],
            &[],
            Some("hello attach\n"),
        )
        .await;
    assert_eq!(ran.code, Some(0), "{}\nkubelet log:\n{}", ran.describe(), kubelet.log_tail(30));
    assert_eq!(ran.stdout, "HELLO ATTACH\npod \"upper\" deleted from default namespace\n", "{}", ran.describe());
    eventually(WAIT, "the pod deleted (--rm)", || async {
        let (status, _) = api.get("/api/v1/namespaces/default/pods/upper").await;
        (status == 404).then_some(())
    })
    .await;

    // run -i of a process that fails: its exit code is rkubectl's.
    let ran = k
        .run_with(
            &["run", "failing", "-i", "--restart=Never", &image, overrides, "--", "sh", "-c", "cat; exit 7"],
            &[],
            Some("bye\n"),
        )
        .await;
    assert_eq!((ran.code, ran.stdout.as_str()), (Some(7), "bye\n"), "{}", ran.describe());
    assert!(ran.stderr.starts_with("pod default/failing terminated ("), "{}", ran.describe());

    // attach -i to a running pod that reads its stdin: stdout and stderr apart.
    let reader = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reader"},
        "spec": {"nodeName": "attach-node", "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": TEST_IMAGE, "stdin": true, "stdinOnce": true,
                "command": ["sh", "-c", "while read line; do echo got $line; echo oops $line >&2; done; echo bye"]}]}});
    create_running(&api, &reader).await;
    let ran = k.run_with(&["attach", "-i", "reader"], &[], Some("one\ntwo\n")).await;
    assert_eq!((ran.code, ran.stdout.as_str()), (Some(0), "got one\ngot two\nbye\n"), "{}", ran.describe());
    assert!(ran.stderr.contains("oops one\noops two\n"), "stderr apart: {}", ran.describe());
    eventually(WAIT, "the reader Succeeded", || async {
        let (_, pod) = api.get("/api/v1/namespaces/default/pods/reader").await;
        (pod["status"]["phase"] == "Succeeded").then_some(())
    })
    .await;
    let ran = k.fails(&["attach", "reader"]).await;
    assert_eq!(ran.stderr.trim(), "error: cannot attach a container in a completed pod; current phase is Succeeded");

    // attach to a process without stdin: its output from now on, until it ends.
    let script = "echo started; i=0; while [ ! -e /tmp/stop ] && [ $i -lt 300 ]; do echo tick $i; sleep 0.1; \
                  i=$((i+1)); done; echo bye >&2";
    let plain = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
        "spec": {"nodeName": "attach-node", "terminationGracePeriodSeconds": 1, "restartPolicy": "Never",
            "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sh", "-c", script]}]}});
    create_running(&api, &plain).await;
    let mut attach = k.command(&["attach", "pod/plain"]).spawn().expect("rkubectl attach");
    let stdout = attach.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let first = tokio::time::timeout(WAIT, lines.next_line()).await.expect("a line in time").expect("read");
    assert!(first.as_deref().is_some_and(|line| line.starts_with("tick ")), "{first:?}");
    k.ok(&["exec", "plain", "--", "touch", "/tmp/stop"]).await;
    let mut rest = Vec::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(WAIT, lines.next_line()).await {
        rest.push(line);
    }
    let output = tokio::time::timeout(WAIT, attach.wait_with_output()).await.expect("ends").expect("output");
    assert!(rest.iter().all(|line| line.starts_with("tick ")), "{rest:?}");
    assert_eq!(
        (output.status.code(), String::from_utf8_lossy(&output.stderr).contains("bye\n")),
        (Some(0), true),
        "{output:?}"
    );

    // run -it --rm: a shell in a terminal, typed into; its exit code is rkubectl's.
    let command = format!("exec rkubectl run shell -it --rm --restart=Never {image} '{overrides}' -- sh");
    let (screen, code) = in_terminal(&k, &command, "try pressing enter", b"echo $((6 * 7)); exit 3\r", || {});
    assert!(screen.contains("\n42\n"), "{screen}\nkubelet log:\n{}", kubelet.log_tail(30));
    assert_eq!(code, Some(3), "the shell's exit code: {screen}");
    assert!(screen.contains("pod \"shell\" deleted from default namespace"), "{screen}");

    // Usage errors, in kubectl's words.
    let ran = k.fails(&["run", "x", &image, "-t"]).await;
    assert_eq!(ran.stderr.trim(), "error: -i/--stdin is required for containers with -t/--tty=true");
    let ran = k.fails(&["run", "x", &image, "--rm"]).await;
    assert_eq!(ran.stderr.trim(), "error: --rm should only be used for attached containers");
}

#[tokio::test]
async fn rkubectl_cp_copies_both_ways_and_debug_adds_an_ephemeral_container() {
    let cluster = Cluster::start().await.expect("cluster starts");
    let containerd = Containerd::start().await.expect("containerd starts");
    let kubelet = Kubelet::start_containerd(&cluster, &containerd, "cp-node").await.expect("kubelet starts");
    let api = Api::new(cluster.url());
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app"},
        "spec": {"nodeName": "cp-node", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sleep", "3600"]}]}});
    create_running(&api, &pod).await;
    let k = Rkubectl::new(&cluster);
    let local = |name: &str| k.dir().join(name).display().to_string();

    // cp up: a file, a directory (recursively), and a file into a directory that exists there.
    let note = k.file("note.txt", "hello from the host\n");
    k.file("upload/nested/deep.txt", "deep\n");
    assert_eq!(k.ok(&["cp", &note, "app:/tmp/note.txt"]).await, "");
    assert_eq!(k.ok(&["cp", &local("upload"), "default/app:/tmp/upload", "-c", "main"]).await, "");
    k.ok(&["exec", "app", "--", "mkdir", "/tmp/inbox"]).await;
    k.ok(&["cp", &note, "app:/tmp/inbox"]).await;
    let out = k
        .ok(&["exec", "app", "--", "cat", "/tmp/note.txt", "/tmp/upload/nested/deep.txt", "/tmp/inbox/note.txt"])
        .await;
    assert_eq!(out, "hello from the host\ndeep\nhello from the host\n", "{}", kubelet.log_tail(10));

    // cp down: the directory, a file to a new name, and a file into a local directory.
    k.ok(&["cp", "app:/tmp/upload", &local("back")]).await;
    assert_eq!(std::fs::read_to_string(local("back/nested/deep.txt")).ok().as_deref(), Some("deep\n"));
    k.ok(&["cp", "app:/tmp/note.txt", &local("copied.txt")]).await;
    assert_eq!(std::fs::read_to_string(local("copied.txt")).ok().as_deref(), Some("hello from the host\n"));
    std::fs::create_dir_all(local("into")).expect("dir");
    k.ok(&["cp", "app:/tmp/note.txt", &local("into")]).await;
    assert_eq!(std::fs::read_to_string(local("into/note.txt")).ok().as_deref(), Some("hello from the host\n"));

    // What cannot be copied: one line each.
    let ran = k.fails(&["cp", &note, &local("elsewhere")]).await;
    assert_eq!(ran.stderr.trim(), "error: one of src or dest must be a remote file specification");
    let ran = k.fails(&["cp", &local("missing"), "app:/tmp/x"]).await;
    assert!(ran.stderr.contains("doesn't exist in local filesystem"), "{}", ran.describe());
    let ran = k.fails(&["cp", "app:/no/such/file", &local("nothing")]).await;
    assert!(ran.stderr.starts_with("error: tar cf - /no/such/file exited with code"), "{}", ran.describe());

    // debug: an ephemeral container in the target's process namespace, its output its log.
    let image = format!("--image={TEST_IMAGE}");
    let ran = k.run(&["debug", "app", &image, "--target=main", "-c", "probe", "--", "ps", "-o", "pid,args"]).await;
    assert_eq!((ran.code, ran.stdout.as_str()), (Some(0), ""), "{}", ran.describe());
    let log = eventually(WAIT, "the debug container's output", || async {
        let ran = k.run(&["logs", "app", "-c", "probe"]).await;
        ran.stdout.contains("ps -o pid,args").then_some(ran.stdout)
    })
    .await;
    assert!(log.contains("sleep 3600"), "the target's process is visible:\n{log}");

    // The same container as the real kubectl's debug adds (names and commands aside).
    rkube_tests::kubectl::real_kubectl(
        k.kubeconfig(),
        k.dir(),
        &["debug", "app", &image, "--target=main", "-c", "kprobe", "--", "true"],
    )
    .await;
    let stored = api.get_ok("/api/v1/namespaces/default/pods/app").await["spec"]["ephemeralContainers"].clone();
    let without_identity = |name: &str| {
        let mut container =
            stored.as_array().into_iter().flatten().find(|c| c["name"] == name).cloned().unwrap_or_default();
        if let Some(map) = container.as_object_mut() {
            map.remove("name");
            map.remove("command");
        }
        container
    };
    assert_eq!(without_identity("probe"), without_identity("kprobe"), "{stored}");

    // -it: a shell in a terminal, attached to.
    let command = format!("exec rkubectl debug app -it {image} --target=main -c shell -- sh");
    let (screen, _) = in_terminal(&k, &command, "try pressing enter", b"echo $((6 * 7)); exit\r", || {});
    assert!(screen.contains("\n42\n"), "{screen}\nkubelet log:\n{}", kubelet.log_tail(30));
    let ran = k.run(&["debug", "app", &image]).await;
    assert!(ran.stderr.starts_with("Defaulting debug container name to debugger-"), "{}", ran.describe());
    let ran = k.fails(&["debug", "app", &image, "--target=nobody"]).await;
    assert_eq!(ran.stderr.trim(), "error: container \"nobody\" not found in pod \"app\"");
    let ran = k.fails(&["debug", "app", &image, "-c", "probe"]).await;
    assert!(ran.stderr.contains("already exists"), "{}", ran.describe());
}
