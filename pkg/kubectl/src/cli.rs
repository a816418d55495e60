//! The command line: global flags and one subcommand per verb, as clap types.
//!
//! The names, short flags and defaults follow kubectl, so `rkubectl get po -n kube-system -o
//! wide` means what it means to kubectl. Parsing is clap's: an unknown flag is a one-line
//! error and exit code 2. Nothing here talks to the server; [`crate::run`] does.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// How the whole command line parses.
#[derive(Debug, Parser)]
#[command(
    name = "rkubectl",
    version,
    about = "rkubectl controls an rkube cluster, the way kubectl controls Kubernetes.",
    long_about = "rkubectl controls an rkube cluster, the way kubectl controls Kubernetes.\n\n\
It finds the cluster in a kubeconfig file (--kubeconfig, else $KUBECONFIG, else ~/.kube/config) \
and talks to its apiserver.\n\n\
Examples:\n  rkubectl get pods                       list pods in the current namespace\n  \
rkubectl get deploy web -o yaml         show one deployment as YAML\n  \
rkubectl apply -f manifests/            create or update everything in a directory\n  \
rkubectl describe pod web               details and recent events of a pod\n  \
rkubectl delete pod web                 delete a pod and wait until it is gone",
    propagate_version = true
)]
pub struct Cli {
    /// Flags every command accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The verb to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags that choose the cluster and namespace; accepted before or after the verb.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file to use (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE", help_heading = "Global options")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current-context).
    #[arg(long, global = true, value_name = "NAME", help_heading = "Global options")]
    pub context: Option<String>,
    /// The namespace to work in (default: the context's namespace, else "default").
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE", help_heading = "Global options")]
    pub namespace: Option<String>,
    /// List or watch objects across all namespaces.
    #[arg(short = 'A', long, global = true, help_heading = "Global options")]
    pub all_namespaces: bool,
    /// The apiserver's URL, overriding the kubeconfig's (e.g. http://127.0.0.1:6443).
    #[arg(short = 's', long, global = true, value_name = "URL", help_heading = "Global options")]
    pub server: Option<String>,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show one or many resources as a table, YAML, JSON, names or a JSONPath template.
    #[command(after_help = "Examples:\n  rkubectl get pods\n  rkubectl get po,deploy -l app=web\n  \
rkubectl get pod web -o jsonpath='{.status.phase}'\n  rkubectl get nodes -w")]
    Get(GetArgs),
    /// Create the objects in files, or one object from flags (fails for objects that already
    /// exist).
    #[command(after_help = "Examples:\n  rkubectl create -f app.yaml\n  \
rkubectl create deployment web --image=nginx --replicas=3\n  \
rkubectl create deployment web --image=busybox -- httpd -f -p 8080\n  \
rkubectl create configmap cfg --from-literal=mode=fast --from-file=settings.ini\n  \
rkubectl create service clusterip web --tcp=80:8080\n  \
rkubectl create deployment web --image=nginx --dry-run=client -o yaml > web.yaml")]
    Create(CreateArgs),
    /// Make a Service for a deployment, replicaset, pod or service, selecting its pods.
    #[command(after_help = "Examples:\n  rkubectl expose deployment web --port=80 --target-port=8080\n  \
rkubectl expose deploy/web --port=80 --type=NodePort --name=web-public")]
    Expose(ExposeArgs),
    /// Change fields of existing objects (`set env`).
    #[command(subcommand)]
    Set(SetCommand),
    /// Create or update the objects in files so that they match the files.
    #[command(long_about = "Create or update the objects in files so that they match the files.\n\n\
Objects that do not exist are created; existing ones get a patch computed from the file, the \
live object and the last applied file (kept in the annotation \
kubectl.kubernetes.io/last-applied-configuration). Each object prints `created`, `configured` \
or `unchanged`. Running the same apply twice changes nothing.")]
    Apply(FileArgs),
    /// Delete resources by name, by file, by label selector, or all of a type.
    Delete(DeleteArgs),
    /// Show details of resources, with related objects and recent events.
    Describe(DescribeArgs),
    /// Edit a resource in $KUBE_EDITOR or $EDITOR and save it back.
    Edit(EditArgs),
    /// Change fields of a resource with a strategic merge, JSON merge or JSON patch.
    Patch(PatchArgs),
    /// Add, change (--overwrite) or remove (`key-`) labels of a resource.
    Label(MetaArgs),
    /// Add, change (--overwrite) or remove (`key-`) annotations of a resource.
    Annotate(MetaArgs),
    /// Set the number of replicas of a deployment or replicaset.
    Scale(ScaleArgs),
    /// Run an image: a pod (attached to with -i/-it, removed after with --rm), or a deployment
    /// with --replicas.
    #[command(after_help = "Examples:\n  rkubectl run web --image=nginx --port=80\n  \
rkubectl run shell -it --rm --restart=Never --image=busybox -- sh\n  \
echo hello | rkubectl run upper -i --rm --restart=Never --image=busybox -- tr a-z A-Z")]
    Run(RunArgs),
    /// Mark a node unschedulable.
    Cordon(NodeArgs),
    /// Mark a node schedulable again.
    Uncordon(NodeArgs),
    /// Cordon a node and evict the pods running on it (respecting PodDisruptionBudgets),
    /// waiting until they are gone.
    Drain(DrainArgs),
    /// Wait until resources meet a condition, or are deleted.
    #[command(after_help = "Examples:\n  rkubectl wait pod/web --for=condition=Ready --timeout=60s\n  \
rkubectl wait deploy web --for=condition=Available\n  rkubectl wait pod/web --for=delete")]
    Wait(WaitArgs),
    /// List events, oldest first (-w to follow new ones).
    Events(EventsArgs),
    /// Manage the rollout of a deployment.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Print the logs of a container in a pod.
    Logs(LogsArgs),
    /// Run a command in a container of a running pod.
    #[command(
        after_help = "Examples:\n  rkubectl exec web -- ls -l /\n  rkubectl exec web -c main -- sh -c 'echo $HOSTNAME'\n  \
echo hello | rkubectl exec -i web -- cat\n  rkubectl exec -it web -- sh"
    )]
    Exec(ExecArgs),
    /// Add an ephemeral debugging container to a running pod (and attach to it with -it).
    #[command(after_help = "Examples:\n  rkubectl debug -it web --image=busybox --target=main -- sh\n  \
rkubectl debug web --image=busybox --target=main -c probe -- ps\n  rkubectl logs web -c probe")]
    Debug(DebugArgs),
    /// Copy files and directories into and out of containers (needs tar in the container).
    #[command(after_help = "Examples:\n  rkubectl cp notes.txt web:/tmp/notes.txt\n  \
rkubectl cp ./site team/web:/srv -c main\n  rkubectl cp web:/var/log ./logs")]
    Cp(CpArgs),
    /// Attach to the process a container runs (its output, and with -i its stdin).
    #[command(after_help = "Examples:\n  rkubectl attach web\n  rkubectl attach -it shell -c main")]
    Attach(AttachArgs),
    /// Forward local ports to ports of a pod (or of a pod behind a Service or workload).
    #[command(
        after_help = "Examples:\n  rkubectl port-forward pod/web 8080\n  rkubectl port-forward web 18080:80 9090\n  \
rkubectl port-forward svc/web :80        # any free local port, to the Service's targetPort\n  \
rkubectl port-forward deploy/web 8080:http"
    )]
    PortForward(PortForwardArgs),
    /// Show the CPU and memory nodes or pods use now (from metrics.k8s.io).
    #[command(subcommand)]
    Top(TopCommand),
    /// Show the documentation of a kind or of one of its fields (from the server's OpenAPI).
    #[command(after_help = "Examples:\n  rkubectl explain pods\n  rkubectl explain deployment.spec.replicas\n  \
rkubectl explain pod.spec.containers --recursive")]
    Explain(ExplainArgs),
    /// List the resource types the server serves.
    ApiResources(ApiResourcesArgs),
    /// Print the client and server versions.
    Version(VersionArgs),
    /// Read and change kubeconfig files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script (bash, zsh or fish).
    #[command(long_about = "Print a shell completion script.\n\nbash: source <(rkubectl completion bash)\n\
zsh:  source <(rkubectl completion zsh)\nfish: rkubectl completion fish | source")]
    Completion {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// `get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// TYPE [NAME...], TYPE1,TYPE2, or TYPE/NAME... (e.g. `pods`, `po web`, `deploy/web`).
    #[arg(required = true, value_name = "TYPE[/NAME]")]
    pub resources: Vec<String>,
    /// Output format: wide, yaml, json, name, or jsonpath=TEMPLATE.
    #[arg(short = 'o', long, value_name = "FORMAT")]
    pub output: Option<String>,
    /// Only objects whose labels match (e.g. `app=web,tier!=db`).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Only objects whose fields match (e.g. `status.phase=Running`).
    #[arg(long, value_name = "SELECTOR")]
    pub field_selector: Option<String>,
    /// Add a LABELS column.
    #[arg(long)]
    pub show_labels: bool,
    /// After listing, keep printing changes until interrupted.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Print nothing (not even an error) when a named object does not exist.
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// `create` and `apply`.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// A file, a directory (its .yaml, .yml and .json files) or `-` for standard input.
    #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
    pub filenames: Vec<String>,
    /// Also read the directories' subdirectories.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Print `kind/name` only.
    #[arg(short = 'o', long, value_name = "FORMAT")]
    pub output: Option<String>,
}

/// `create`: `-f` files, or a generator subcommand.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct CreateArgs {
    /// A file, a directory (its .yaml, .yml and .json files) or `-` for standard input.
    #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
    pub filenames: Vec<String>,
    /// Also read the directories' subdirectories.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Print `kind/name` only.
    #[arg(short = 'o', long, value_name = "FORMAT")]
    pub output: Option<String>,
    /// The object to build from flags instead of files.
    #[command(subcommand)]
    pub generator: Option<CreateCommand>,
}

/// The objects `create` builds from flags.
#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// A namespace.
    #[command(visible_alias = "ns")]
    Namespace(NamespaceArgs),
    /// A deployment running the images (labels `app=NAME`).
    #[command(visible_alias = "deploy")]
    Deployment(DeploymentArgs),
    /// A configmap from literals, files, directories or env files.
    #[command(visible_alias = "cm")]
    Configmap(ConfigMapArgs),
    /// A secret (`generic`).
    #[command(subcommand)]
    Secret(SecretCommand),
    /// A service (`clusterip`, `nodeport`, `loadbalancer`) selecting pods labelled `app=NAME`.
    #[command(subcommand, visible_alias = "svc")]
    Service(ServiceCommand),
    /// A job running an image once, or a job from a cronjob's template (`--from=cronjob/NAME`).
    Job(JobArgs),
    /// A priority class.
    #[command(visible_alias = "pc")]
    Priorityclass(PriorityClassArgs),
    /// A resource quota.
    #[command(visible_alias = "resourcequota")]
    Quota(QuotaArgs),
    /// A pod disruption budget.
    #[command(visible_alias = "pdb")]
    Poddisruptionbudget(PdbArgs),
}

/// Flags every generator (and `expose`) takes.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// `none` (create it), `client` (only print it) or `server` (the server checks it, keeps
    /// nothing).
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client", value_name = "MODE")]
    pub dry_run: String,
    /// Print the object as yaml, json, name or jsonpath=TEMPLATE instead of a message.
    #[arg(short = 'o', long, value_name = "FORMAT")]
    pub output: Option<String>,
}

/// `create namespace`.
#[derive(Debug, Args)]
pub struct NamespaceArgs {
    /// The namespace's name.
    pub name: String,
    /// `--dry-run` and `-o`.
    #[command(flatten)]
    pub generate: GenerateArgs,
}

/// `create deployment`.
#[derive(Debug, Args)]
pub struct DeploymentArgs {
    /// The deployment's name.
    pub name: String,
    /// An image to run (repeat for several containers).
    #[arg(long, required = true)]
    pub image: Vec<String>,
    /// The number of pods.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub replicas: i32,
    /// The port the first container exposes.
    #[arg(long, value_name = "PORT")]
    pub port: Option<i32>,
    /// The first container's command, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// `--dry-run` and `-o`.
    #[command(flatten)]
    pub generate: GenerateArgs,
}

/// Where configmap and secret entries come from.
#[derive(Debug, Clone, Default, Args)]
pub struct SourceArgs {
    /// `KEY=VALUE` (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub from_literal: Vec<String>,
    /// `[KEY=]FILE`, or a directory for each regular file in it (repeatable).
    #[arg(long, value_name = "[KEY=]PATH")]
    pub from_file: Vec<String>,
    /// A file of `KEY=VALUE` lines (`#` comments and blank lines skipped).
    #[arg(long, value_name = "FILE")]
    pub from_env_file: Vec<String>,
}

/// `create configmap`.
#[derive(Debug, Args)]
pub struct ConfigMapArgs {
    /// The configmap's name.
    pub name: String,
    /// `--from-literal`, `--from-file`, `--from-env-file`.
    #[command(flatten)]
    pub sources: SourceArgs,
    /// `--dry-run` and `-o`.
    #[command(flatten)]
    pub generate: GenerateArgs,
}

/// `create secret`.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// A secret from literals, files, directories or env files.
    Generic(SecretArgs),
}

/// `create secret generic`.
#[derive(Debug, Args)]
pub struct SecretArgs {
    /// The secret's name.
    pub name: String,
    /// `--from-literal`, `--from-file`, `--from-env-file`.
    #[command(flatten)]
    pub sources: SourceArgs,
    /// The secret's type (default: the server's, Opaque).
    #[arg(long = "type", value_name = "TYPE")]
    pub secret_type: Option<String>,
    /// `--dry-run` and `-o`.
    #[command(flatten)]
    pub generate: GenerateArgs,
}

/// `create service`.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// A service with a cluster IP (`--clusterip=None`: headless).
    Clusterip(ServiceArgs),
    /// A service also reachable on a port of every node.
    Nodeport(ServiceArgs),
    /// A service of type LoadBalancer.
    Loadbalancer(ServiceArgs),
}

/// `create service clusterip|nodeport|loadbalancer`.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The service's name (also its selector, `app=NAME`).
    pub name: String,
    /// `PORT[:TARGET_PORT]` (repeatable, or comma-separated).
    #[arg(long, value_name = "PORT[:TARGET]")]
    pub tcp: Vec<String>,
    /// The cluster IP to ask for, or `None` for a headless service (clusterip only).
    #[arg(long, value_name = "IP")]
    pub clusterip: Option<String>,
    /// The node port to ask for (nodeport only).
    #[arg(long, value_name = "PORT")]
    pub node_port: Option<i32>,
    /// `--dry-run` and `-o`.
    #[command(flatten)]
    pub generate: GenerateArgs,
}

/// `create job`.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job's name (also its container's).
    pub name: String,
    /// The image to run.
    #[arg(long)]
    pub image: Option<String>,
    /// `cronjob/NAME`: a job from that cronjob's template.
    #[arg(long, value_name = "cronjob/NAME")]
    pub from: Option<String>,
    /// The container's command, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// `--dry-run` and `-o`.
    #[command(flatten)]
    pub generate: GenerateArgs,
}

/// `create priorityclass`.
#[derive(Debug, Args)]
pub struct PriorityClassArgs {
    /// The priority class's name.
    pub name: String,
    /// The priority.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub value: i32,
    /// Make it the priority of pods that name no class.
    #[arg(long)]
    pub global_default: bool,
    /// What the class is for.
    #[arg(long)]
    pub description: Option<String>,
    /// `PreemptLowerPriority` or `Never`.
    #[arg(long, default_value = "PreemptLowerPriority", value_name = "POLICY")]
    pub preemption_policy: String,
    /// `--dry-run` and `-o`.
    #[command(flatten)]
    pub generate: GenerateArgs,
}

/// `create quota`.
#[derive(Debug, Args)]
pub struct QuotaArgs {
    /// The quota's name.
    pub name: String,
    /// `RESOURCE=QUANTITY,...` (e.g. `cpu=1,memory=1Gi,pods=5`).
    #[arg(long, value_name = "LIST")]
    pub hard: Vec<String>,
    /// Scopes, comma-separated (e.g. `BestEffort,NotTerminating`).
    #[arg(long, value_name = "LIST")]
    pub scopes: Vec<String>,
    /// `--dry-run` and `-o`.
    #[command(flatten)]
    pub generate: GenerateArgs,
}

/// `create poddisruptionbudget`.
#[derive(Debug, Args)]
pub struct PdbArgs {
    /// The budget's name.
    pub name: String,
    /// The pods it guards (a label selector, e.g. `app=web`).
    #[arg(long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// How many (or what percentage) must stay available.
    #[arg(long, value_name = "N|N%")]
    pub min_available: Option<String>,
    /// How many (or what percentage) may be unavailable.
    #[arg(long, value_name = "N|N%")]
    pub max_unavailable: Option<String>,
    /// `--dry-run` and `-o`.
    #[command(flatten)]
    pub generate: GenerateArgs,
}

/// `expose`.
#[derive(Debug, Args)]
pub struct ExposeArgs {
    /// TYPE NAME or TYPE/NAME (deployment, replicaset, replicationcontroller, pod, service).
    #[arg(required = true, value_name = "TYPE[/NAME]")]
    pub resources: Vec<String>,
    /// The service's port (default: the ports the pods' containers declare).
    #[arg(long, value_name = "PORT")]
    pub port: Option<i32>,
    /// The pods' port (a number or a port name; default: the same as --port).
    #[arg(long, value_name = "PORT")]
    pub target_port: Option<String>,
    /// ClusterIP (default), NodePort or LoadBalancer.
    #[arg(long = "type", value_name = "TYPE")]
    pub service_type: Option<String>,
    /// The service's name (default: the object's).
    #[arg(long)]
    pub name: Option<String>,
    /// TCP, UDP or SCTP.
    #[arg(long)]
    pub protocol: Option<String>,
    /// The pods to select (`k=v,...`; default: the object's selector).
    #[arg(long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// The service's labels (`k=v,...`; default: the object's).
    #[arg(short = 'l', long, value_name = "LABELS")]
    pub labels: Option<String>,
    /// The cluster IP to ask for, or `None` for a headless service.
    #[arg(long, value_name = "IP")]
    pub cluster_ip: Option<String>,
    /// `--dry-run` and `-o`.
    #[command(flatten)]
    pub generate: GenerateArgs,
}

/// `set`.
#[derive(Debug, Subcommand)]
pub enum SetCommand {
    /// Set (`KEY=VALUE`) or remove (`KEY-`) environment variables of a workload's containers.
    #[command(after_help = "Examples:\n  rkubectl set env deployment/web MODE=fast\n  \
rkubectl set env deploy web -c main DEBUG-\n  rkubectl set env deploy/web --list")]
    Env(SetEnvArgs),
}

/// `set env`.
#[derive(Debug, Args)]
pub struct SetEnvArgs {
    /// TYPE/NAME (or TYPE NAME), then KEY=VALUE and KEY- changes.
    #[arg(required = true, value_name = "TYPE[/NAME] KEY=VAL|KEY-")]
    pub args: Vec<String>,
    /// Only the containers with this name (`*` globs allowed; default: all).
    #[arg(short = 'c', long, value_name = "NAME")]
    pub containers: Option<String>,
    /// A `KEY=VALUE` to set (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Print the containers' variables instead of changing them.
    #[arg(long)]
    pub list: bool,
    /// Replace variables that are already set (`--overwrite=false`: refuse).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub overwrite: bool,
}

/// `delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// TYPE NAME..., TYPE/NAME..., or TYPE with -l or --all.
    #[arg(value_name = "TYPE[/NAME]")]
    pub resources: Vec<String>,
    /// Delete the objects in these files.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filenames: Vec<String>,
    /// Also read the directories' subdirectories.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Delete the objects whose labels match.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Delete every object of the type in the namespace.
    #[arg(long)]
    pub all: bool,
    /// Seconds the object gets to shut down (0 = at once; default: the object's own).
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
    pub grace_period: Option<i64>,
    /// Wait until the objects are gone (`--wait=false` returns at once).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub wait: bool,
    /// How long --wait waits (e.g. 30s, 2m; 0 = forever).
    #[arg(long, default_value = "0s", value_name = "DURATION")]
    pub timeout: String,
    /// Succeed when an object does not exist.
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// `describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// TYPE [NAME...] or TYPE/NAME.
    #[arg(required = true, value_name = "TYPE[/NAME]")]
    pub resources: Vec<String>,
    /// Describe the objects whose labels match.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
}

/// `edit`.
#[derive(Debug, Args)]
pub struct EditArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true, value_name = "TYPE[/NAME]")]
    pub resources: Vec<String>,
    /// Edit as `yaml` (default) or `json`.
    #[arg(short = 'o', long, default_value = "yaml", value_name = "FORMAT")]
    pub output: String,
}

/// `patch`.
#[derive(Debug, Args)]
pub struct PatchArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true, value_name = "TYPE[/NAME]")]
    pub resources: Vec<String>,
    /// The patch, as JSON or YAML.
    #[arg(short = 'p', long, value_name = "PATCH")]
    pub patch: String,
    /// strategic (default), merge (RFC 7386) or json (RFC 6902).
    #[arg(long = "type", default_value = "strategic", value_name = "TYPE")]
    pub patch_type: String,
}

/// `label` and `annotate`.
#[derive(Debug, Args)]
pub struct MetaArgs {
    /// TYPE NAME KEY=VALUE... KEY-... (or TYPE/NAME KEY=VALUE...).
    #[arg(required = true, value_name = "TYPE[/NAME] KEY=VAL|KEY-")]
    pub args: Vec<String>,
    /// Allow replacing a value that is already set.
    #[arg(long)]
    pub overwrite: bool,
}

/// `scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// TYPE NAME or TYPE/NAME (deployments, replicasets).
    #[arg(required = true, value_name = "TYPE[/NAME]")]
    pub resources: Vec<String>,
    /// The number of replicas wanted.
    #[arg(long, value_name = "N")]
    pub replicas: i32,
}

/// `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The name of the pod (or deployment).
    pub name: String,
    /// The container image.
    #[arg(long)]
    pub image: String,
    /// Create a deployment with this many replicas instead of a single pod.
    #[arg(long, value_name = "N")]
    pub replicas: Option<i32>,
    /// Labels (`k=v,k2=v2`); default `run=NAME` (`app=NAME` for a deployment).
    #[arg(short = 'l', long, value_name = "LABELS")]
    pub labels: Option<String>,
    /// A port the container exposes.
    #[arg(long, value_name = "PORT")]
    pub port: Option<i32>,
    /// Environment variables (`KEY=VALUE`), repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Treat the arguments after `--` as the command instead of the image's arguments.
    #[arg(long)]
    pub command: bool,
    /// Keep the container's stdin open and pass this process's stdin to it (attaches).
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Give the container a terminal (needs -i).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Wait for the pod and attach to its process (default: with -i).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub attach: Option<bool>,
    /// Delete the pod once the attached session ends.
    #[arg(long)]
    pub rm: bool,
    /// The pod's restart policy: Always, OnFailure or Never.
    #[arg(long, default_value = "Always", value_name = "POLICY")]
    pub restart: String,
    /// JSON to merge into the generated object (e.g. `{"spec":{"nodeName":"n1"}}`).
    #[arg(long, value_name = "JSON")]
    pub overrides: Option<String>,
    /// How --overrides is merged: merge (RFC 7386) or strategic.
    #[arg(long, default_value = "merge", value_name = "TYPE")]
    pub override_type: String,
    /// How long to wait for the pod to run before attaching (e.g. 1m).
    #[arg(long, default_value = "1m", value_name = "DURATION")]
    pub pod_running_timeout: String,
    /// Arguments (or the command, with --command) after `--`.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// `debug`.
#[derive(Debug, Args)]
pub struct DebugArgs {
    /// The pod (NAME or pod/NAME).
    pub pod: String,
    /// The debugging container's image.
    #[arg(long, required = true)]
    pub image: String,
    /// The container whose processes the debugging container shares (its process namespace).
    #[arg(long, value_name = "CONTAINER")]
    pub target: Option<String>,
    /// The debugging container's name (default: debugger-xxxxx).
    #[arg(short = 'c', long, value_name = "NAME")]
    pub container: Option<String>,
    /// Keep its stdin open and attach to it.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Give it a terminal (needs -i).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The words after `--` are its args, not its command.
    #[arg(long)]
    pub arguments_only: bool,
    /// Its image pull policy (Always, IfNotPresent, Never).
    #[arg(long, value_name = "POLICY")]
    pub image_pull_policy: Option<String>,
    /// Environment variables (`KEY=VALUE`), repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// How long to wait for it to start before attaching (e.g. 1m).
    #[arg(long, default_value = "1m", value_name = "DURATION")]
    pub pod_running_timeout: String,
    /// Its command (or args, with --arguments-only), after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// LOCAL_PATH or [NAMESPACE/]POD:PATH.
    pub source: String,
    /// LOCAL_PATH or [NAMESPACE/]POD:PATH (the other kind).
    pub destination: String,
    /// The container (default: the pod's default or first container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
}

/// `attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The pod (NAME or pod/NAME).
    pub pod: String,
    /// The container (default: the pod's default or first container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass this process's stdin to the container's process.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Use the container's terminal (it must have been started with one).
    #[arg(short = 't', long)]
    pub tty: bool,
}

/// `cordon` and `uncordon`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's name.
    pub node: String,
}

/// `drain`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The node's name.
    pub node: String,
    /// Leave pods a DaemonSet controls on the node (without it, drain refuses when there are
    /// any; their controller would put them back on the node anyway).
    #[arg(long)]
    pub ignore_daemonsets: bool,
    /// Seconds each pod gets to shut down (default: the pod's own).
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
    pub grace_period: Option<i64>,
    /// How long to wait for the pods to be gone (e.g. 60s; 0 = forever).
    #[arg(long, default_value = "0s", value_name = "DURATION")]
    pub timeout: String,
    /// Also delete pods that no controller owns (they will not come back).
    #[arg(long)]
    pub force: bool,
    /// Also evict pods with emptyDir volumes (their data is lost).
    #[arg(long)]
    pub delete_emptydir_data: bool,
}

/// `wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true, value_name = "TYPE[/NAME]")]
    pub resources: Vec<String>,
    /// `condition=NAME[=VALUE]` (VALUE default True) or `delete`.
    #[arg(long = "for", value_name = "CONDITION")]
    pub for_: String,
    /// How long to wait (e.g. 30s, 5m).
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub timeout: String,
}

/// `events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events about this object (TYPE/NAME).
    #[arg(long = "for", value_name = "TYPE/NAME")]
    pub for_: Option<String>,
    /// After listing, keep printing new events until interrupted.
    #[arg(short = 'w', long)]
    pub watch: bool,
}

/// `rollout`.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Wait until a deployment's rollout finishes, showing progress.
    Status(RolloutArgs),
    /// List a deployment's revisions.
    History(RolloutArgs),
    /// Roll a deployment back to the previous (or a given) revision.
    Undo(RolloutArgs),
    /// Restart a deployment's pods by rolling out a new revision.
    Restart(RolloutArgs),
}

/// The arguments of each `rollout` verb.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// deployment NAME or deployment/NAME.
    #[arg(required = true, value_name = "TYPE[/NAME]")]
    pub resources: Vec<String>,
    /// For `undo`: the revision to go back to (0 = the previous one).
    #[arg(long, default_value_t = 0)]
    pub to_revision: i64,
    /// For `status`: how long to wait (0 = forever).
    #[arg(long, default_value = "0s", value_name = "DURATION")]
    pub timeout: String,
}

/// `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The pod (NAME or pod/NAME).
    pub pod: String,
    /// The container (default: the pod's only or first container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass this process's stdin to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Allocate a terminal (with -i, when stdin is a terminal): raw mode, sizes and resizes.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `port-forward`.
#[derive(Debug, Args)]
pub struct PortForwardArgs {
    /// The pod (NAME or pod/NAME), or svc/NAME, deploy/NAME, rs/NAME for one of its running pods.
    pub target: String,
    /// [LOCAL:]REMOTE ports: `8080`, `18080:80`, `:80` (any free local port); REMOTE may be a
    /// port name.
    #[arg(required = true, value_name = "[LOCAL:]REMOTE")]
    pub ports: Vec<String>,
    /// The local address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,
}

/// `logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The pod (NAME or pod/NAME).
    pub pod: String,
    /// The container (default: the pod's only or first container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep streaming new lines.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<i64>,
    /// The logs of the previous, terminated run of the container.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Prefix each line with the time it was written (RFC 3339).
    #[arg(long)]
    pub timestamps: bool,
    /// Only lines newer than this, e.g. 30s, 5m, 1h.
    #[arg(long, value_name = "DURATION", conflicts_with = "since_time")]
    pub since: Option<String>,
    /// Only lines written at or after this time (RFC 3339, e.g. 2026-11-23T10:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub since_time: Option<String>,
    /// Stop after this many bytes.
    #[arg(long, value_name = "N")]
    pub limit_bytes: Option<u64>,
}

/// `top`.
#[derive(Debug, Subcommand)]
pub enum TopCommand {
    /// CPU and memory of nodes, with their share of what the node can give to pods.
    #[command(visible_aliases = ["nodes", "no"], after_help = "Examples:\n  rkubectl top node\n  rkubectl top node n1\n  \
rkubectl top node -l zone=a --sort-by=cpu")]
    Node(TopNodeArgs),
    /// CPU and memory of pods (or of each of their containers).
    #[command(visible_aliases = ["pods", "po"], after_help = "Examples:\n  rkubectl top pod\n  rkubectl top pod -A\n  \
rkubectl top pod web --containers\n  rkubectl top pod -l app=web --sort-by=memory")]
    Pod(TopPodArgs),
}

/// `top node`.
#[derive(Debug, Args)]
pub struct TopNodeArgs {
    /// Only this node.
    pub name: Option<String>,
    /// Only nodes whose labels match.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Highest first by `cpu` or `memory`.
    #[arg(long, value_name = "cpu|memory")]
    pub sort_by: Option<String>,
    /// Percentages of the node's capacity instead of its allocatable resources.
    #[arg(long)]
    pub show_capacity: bool,
    /// Leave out the header line.
    #[arg(long)]
    pub no_headers: bool,
}

/// `top pod`.
#[derive(Debug, Args)]
pub struct TopPodArgs {
    /// Only this pod.
    pub name: Option<String>,
    /// Only pods whose labels match.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Only pods whose fields match (e.g. `metadata.name=web`).
    #[arg(long, value_name = "SELECTOR")]
    pub field_selector: Option<String>,
    /// One row per container.
    #[arg(long)]
    pub containers: bool,
    /// Highest first by `cpu` or `memory`.
    #[arg(long, value_name = "cpu|memory")]
    pub sort_by: Option<String>,
    /// Leave out the header line.
    #[arg(long)]
    pub no_headers: bool,
}

/// `explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// TYPE or TYPE.FIELD.FIELD... (e.g. `pods`, `deployment.spec.template`).
    #[arg(value_name = "TYPE[.FIELD]")]
    pub resource: String,
    /// Print every field below, as a tree, instead of the descriptions.
    #[arg(long)]
    pub recursive: bool,
}

/// `api-resources`.
#[derive(Debug, Args)]
pub struct ApiResourcesArgs {
    /// Only namespaced (true) or cluster-scoped (false) resources.
    #[arg(long, value_name = "BOOL")]
    pub namespaced: Option<bool>,
    /// Print only the names (`-o name`).
    #[arg(short = 'o', long, value_name = "FORMAT")]
    pub output: Option<String>,
}

/// `version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Only the client's version; do not contact the server.
    #[arg(long)]
    pub client: bool,
}

/// `config`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Show the merged kubeconfig (secrets redacted unless --raw).
    View {
        /// Show tokens, passwords and keys.
        #[arg(long)]
        raw: bool,
        /// Only what the current context uses.
        #[arg(long)]
        minify: bool,
    },
    /// Print the current context's name.
    CurrentContext,
    /// List the contexts (`*` marks the current one).
    GetContexts,
    /// Make a context the current one.
    UseContext {
        /// The context's name.
        name: String,
    },
    /// Create or change a context (use the global -n/--namespace for its namespace).
    #[command(after_help = "Example:\n  rkubectl config set-context --current --namespace=kube-system")]
    SetContext {
        /// The context's name (or --current).
        name: Option<String>,
        /// Change the current context.
        #[arg(long)]
        current: bool,
        /// The cluster the context uses.
        #[arg(long)]
        cluster: Option<String>,
        /// The user the context uses.
        #[arg(long)]
        user: Option<String>,
    },
}
