//! `rkubectl explain` against a real apiserver's OpenAPI v3 documents, compared byte for byte
//! with what the real kubectl's `explain` prints for the same cluster.

use rkube_tests::Cluster;
use rkube_tests::kubectl::{Rkubectl, real_kubectl, real_kubectl_run};

#[tokio::test]
async fn explain_prints_what_kubectl_prints() {
    let cluster = Cluster::start().await.expect("etcd and rkube-apiserver start");
    let k = Rkubectl::new(&cluster);
    let cases: &[&[&str]] = &[
        &["pods"],
        &["deployment.spec.replicas"],
        &["pod.spec.containers"],
        &["svc.spec"],
        &["rolebinding.roleRef"],
        &["configmap"],
        &["node.status.capacity"],
        &["pod.spec.containers.resources"],
        &["cronjobs.spec.jobTemplate"],
        &["deployment.spec.strategy", "--recursive"],
        &["pdb.spec", "--recursive"],
    ];
    for case in cases {
        let mut args = vec!["explain"];
        args.extend_from_slice(case);
        let ours = k.ok(&args).await;
        let theirs = real_kubectl(k.kubeconfig(), k.dir(), &args).await;
        assert_eq!(ours, theirs, "rkubectl and kubectl differ on {args:?}");
    }

    // A field that does not exist, and a type the server lacks: one line, as kubectl says it.
    let ran = k.fails(&["explain", "pods.spec.nosuchfield"]).await;
    assert_eq!(ran.stderr.trim(), "error: field \"nosuchfield\" does not exist");
    let theirs = real_kubectl_run(k.kubeconfig(), k.dir(), &["explain", "pods.spec.nosuchfield"], None).await;
    assert!(theirs.stderr.contains("field \"nosuchfield\" does not exist"), "{}", theirs.describe());
    let ran = k.fails(&["explain", "widgets"]).await;
    assert_eq!(ran.stderr.trim(), "error: the server doesn't have a resource type \"widgets\"");
}
