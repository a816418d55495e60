//! `process-compose.yaml` against the scripts it runs. process-compose itself is not in the
//! package registries these machines reach, so the file is never run here; this checks what
//! can drift without it: every command is an executable script of the project that knows the
//! argument it is given, every dependency names a process of the file, the dependencies have
//! no cycle, and the processes are the ones `hack/local-up.sh` starts when process-compose is
//! missing (same scripts, same order).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;

use rkube_tests::repo_root;
use serde_json::Value;

fn compose() -> BTreeMap<String, Value> {
    let path = repo_root().join("process-compose.yaml");
    let text = std::fs::read_to_string(&path).expect("process-compose.yaml");
    let file: Value = serde_yaml_ng::from_str(&text).expect("valid YAML");
    let processes = file["processes"].as_object().expect("a processes map");
    processes.iter().map(|(name, process)| (name.clone(), process.clone())).collect()
}

/// `(script, argument)` of a command such as `hack/run-demo.sh apply`.
fn script(command: &str) -> (String, Option<String>) {
    let mut words = command.split_whitespace();
    let script = words.next().unwrap_or_default().to_string();
    (script, words.next().map(str::to_string))
}

#[test]
fn every_command_and_probe_is_an_executable_script_that_knows_its_argument() {
    for (name, process) in compose() {
        let mut commands = vec![process["command"].as_str().expect("a command").to_string()];
        if let Some(probe) = process["readiness_probe"]["exec"]["command"].as_str() {
            commands.push(probe.to_string());
        }
        for command in commands {
            let (path, argument) = script(&command);
            let file = repo_root().join(&path);
            let mode = std::fs::metadata(&file).unwrap_or_else(|e| panic!("{name}: {path}: {e}")).permissions().mode();
            assert!(mode & 0o111 != 0, "{name}: {path} is not executable");
            if let Some(argument) = argument {
                // The script's own usage names the argument (run-demo.sh import|apply,
                // healthcheck.sh etcd|containerd|...).
                let text = std::fs::read_to_string(&file).expect("script");
                assert!(
                    text.lines().any(|line| line.trim_start().starts_with(&format!("{argument})"))
                        || line_has_case(&text, &argument)),
                    "{name}: {path} has no case for {argument:?}"
                );
            }
        }
    }
}

fn line_has_case(text: &str, argument: &str) -> bool {
    text.lines().any(|line| line.split('|').any(|part| part.trim().trim_end_matches(')') == argument))
}

#[test]
fn dependencies_name_processes_of_the_file_and_have_no_cycle() {
    let processes = compose();
    let mut order: Vec<String> = Vec::new();
    let mut left: BTreeSet<String> = processes.keys().cloned().collect();
    while !left.is_empty() {
        let ready: Vec<String> = left
            .iter()
            .filter(|name| {
                processes[*name]["depends_on"].as_object().into_iter().flatten().all(|(dependency, condition)| {
                    assert!(processes.contains_key(dependency), "{name} depends on unknown {dependency}");
                    let condition = condition["condition"].as_str().unwrap_or_default();
                    assert!(
                        ["process_healthy", "process_completed_successfully", "process_started"].contains(&condition),
                        "{name}: unknown condition {condition:?}"
                    );
                    if condition == "process_healthy" {
                        assert!(
                            processes[dependency]["readiness_probe"].is_object(),
                            "{name} waits for {dependency} to be healthy, which has no readiness probe"
                        );
                    }
                    order.contains(dependency)
                })
            })
            .cloned()
            .collect();
        assert!(!ready.is_empty(), "a dependency cycle among {left:?}");
        for name in ready {
            left.remove(&name);
            order.push(name);
        }
    }
    let position = |name: &str| order.iter().position(|n| n == name).unwrap_or_else(|| panic!("no {name}"));
    assert!(position("etcd") < position("apiserver"));
    assert!(position("apiserver") < position("kubelet") && position("containerd") < position("kubelet"));
    assert!(position("demo-image") < position("kubelet") && position("kubelet") < position("demo"));
}

#[test]
fn the_processes_are_the_ones_local_up_starts_without_process_compose() {
    let local_up = std::fs::read_to_string(repo_root().join("hack/local-up.sh")).expect("local-up.sh");
    let lines: Vec<&str> = local_up.lines().map(str::trim).collect();
    let at = |line: &str| lines.iter().position(|l| *l == line);
    for (name, process) in compose() {
        let (path, argument) = script(process["command"].as_str().expect("a command"));
        // local-up.sh runs `start NAME` (hack/run-NAME.sh) and waits with the same health
        // check, or runs the one-shot demo steps itself.
        let started = match argument {
            Some(argument) => at(&format!("\"${{hack_dir}}/{}\" {argument}", path.trim_start_matches("hack/"))),
            None => {
                assert_eq!(path, format!("hack/run-{name}.sh"), "{name} runs another script than local-up.sh would");
                if process["readiness_probe"].is_object() {
                    assert!(
                        at(&format!("wait_healthy {name} 30")).or(at(&format!("wait_healthy {name} 60"))).is_some()
                    );
                }
                at(&format!("start {name}"))
            }
        };
        assert!(started.is_some(), "{name}: hack/local-up.sh does not start it, so the two ways differ");
    }
}
