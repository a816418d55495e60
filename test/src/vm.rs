//! Harness for the VM lab (`hack/vm-lab-up.sh`): a master and two workers as real QEMU/KVM
//! virtual machines with their own kernels, systemd and network, provisioned by the same
//! `lima/vm-provision.sh` the Lima templates run.
//!
//! [`VmLab::start`] returns `None` (after printing why, loudly) when this machine has no KVM
//! that boots Debian's kernel ([`accel`]), unless `RKUBE_VM_TEST=tcg` asks for emulation. Otherwise it runs `hack/vm-lab-up.sh` with a
//! state directory, bridge and network of the tests' own (the image cache is shared with
//! `make vm-lab-up`, so it is built once per machine) and returns once the apiserver answers
//! and both Nodes are Ready. Dropping the [`VmLab`] runs `hack/vm-lab-down.sh`.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;

use crate::api::Api;
use crate::paths::repo_root;

/// The tests' VM network (`make vm-lab-up` uses 10.249.0).
const TEST_NET: &str = "10.249.100";

/// A running VM lab. Dropping it takes it down.
pub struct VmLab {
    state: PathBuf,
    accel: Accel,
    up: bool,
}

/// How the VMs run: with KVM, or (asked for with `RKUBE_VM_TEST=tcg`) under QEMU's software
/// emulation, which works anywhere but is about ten times slower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization.
    Kvm,
    /// QEMU's TCG.
    Tcg,
}

/// How this machine can run the VM lab's test, or why it cannot: `/dev/kvm` must open
/// read-write and be a KVM that boots Debian's kernel (a PVM `/dev/kvm`, which boots only PVM
/// guest kernels, does not); `RKUBE_VM_TEST=tcg` runs it under emulation anyway.
///
/// # Errors
/// The reason KVM cannot be used, for a loud skip.
pub fn accel() -> Result<Accel, String> {
    if std::env::var("RKUBE_VM_TEST").is_ok_and(|v| v == "tcg") {
        return Ok(Accel::Tcg);
    }
    if let Err(error) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        return Err(format!("/dev/kvm cannot be opened read-write ({error})"));
    }
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        return Err("/dev/kvm is PVM (module kvm_pvm), which boots only PVM guest kernels, not Debian's".into());
    }
    Ok(Accel::Kvm)
}

impl VmLab {
    /// Boots the VM lab with `settings` (`VM_LAB_ENV`: lab-provision.sh settings for the VMs,
    /// e.g. controller-manager timings), or returns `None` after a loud message saying why
    /// this machine cannot run it ([`accel`]).
    ///
    /// # Errors
    /// When `hack/vm-lab-up.sh` fails (its output is in the error).
    pub async fn start(settings: &str) -> anyhow::Result<Option<VmLab>> {
        let accel = match accel() {
            Ok(accel) => accel,
            Err(why) => {
                // Straight to stderr, not eprintln!: the test harness would capture that and
                // show it only for a failing test, and a skip must be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** SKIPPED: the VM lab test needs KVM, and {why}. Run it under QEMU's emulation \
                     (slow: about 8 minutes) with RKUBE_VM_TEST=tcg. ***\n"
                );
                return Ok(None);
            }
        };
        let state = repo_root().join(".rkube").join("vm-lab-test");
        let lab = VmLab { state, accel, up: true };
        let mut command = lab.script("vm-lab-up.sh");
        command.env("VM_LAB_ENV", settings);
        let output = tokio::task::spawn_blocking(move || command.output()).await?.context("running vm-lab-up.sh")?;
        print!("{}", String::from_utf8_lossy(&output.stdout));
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        anyhow::ensure!(output.status.success(), "hack/vm-lab-up.sh failed ({})", output.status);
        Ok(Some(lab))
    }

    /// How the VMs run.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// `hack/<script>` with this lab's environment.
    fn script(&self, script: &str) -> Command {
        let mut command = Command::new(repo_root().join("hack").join(script));
        let accel = if self.accel == Accel::Tcg { "tcg" } else { "kvm" };
        command
            .env("VM_LAB_STATE", &self.state)
            .env("VM_LAB_NAME", "rkvt")
            .env("VM_NET", TEST_NET)
            .env("VM_ACCEL", accel);
        command
    }

    /// Runs `hack/vm-lab-up.sh <args>` (poweroff, poweron, reboot, ssh) and returns its stdout.
    ///
    /// # Errors
    /// When it fails.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = self.script("vm-lab-up.sh");
        command.args(args);
        let what = format!("hack/vm-lab-up.sh {}", args.join(" "));
        tokio::task::spawn_blocking(move || crate::process::run(&mut command, &what)).await?
    }

    /// The address of `vm` (`master`, `worker1`, `worker2`).
    pub fn ip(&self, vm: &str) -> String {
        let last = match vm {
            "master" => 10,
            "worker1" => 11,
            "worker2" => 12,
            other => panic!("no VM {other} in the lab"),
        };
        format!("{TEST_NET}.{last}")
    }

    /// A client of the master's apiserver (plain HTTP, as the Lima lab serves it).
    pub fn api(&self) -> Api {
        Api::new(&format!("http://{}:6443", self.ip("master")))
    }

    /// The last lines of `vm`'s serial console, for failure messages.
    pub fn console_tail(&self, vm: &str, lines: usize) -> String {
        let text = crate::process::read_log(&self.state.join(vm).join("console.log"));
        crate::process::tail(&text, lines)
    }
}

impl Drop for VmLab {
    fn drop(&mut self) {
        if !self.up {
            return;
        }
        match self.script("vm-lab-down.sh").output() {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                eprintln!("hack/vm-lab-down.sh failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr))
            }
            Err(error) => eprintln!("cannot run hack/vm-lab-down.sh: {error}"),
        }
    }
}
