//! The command line: `berth run | check | routes | envoy-config | crdgen | istio-config | write-filter`. Every flag
//! has `long`, an `BERTH_*` environment variable and, where one makes sense, a default.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::compiler::BackendMode;
use crate::envoy_edge;
use crate::objects::health_check::{MIN_INTERVAL, format_duration, parse_duration};

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "Berth's controller: compiles Kubernetes objects into Envoy's routing table"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How log lines read on stderr: `text`, or `json` (one object per line, for a log pipeline).
    #[arg(long, global = true, env = "BERTH_LOG_FORMAT", default_value = "text")]
    pub log_format: crate::logging::LogFormat,
    /// What to log: `error`, `warn`, `info`, `debug`, `trace`, or any `RUST_LOG` directive
    /// (`info,berth_controller=debug`). None (the default): `RUST_LOG`, else `info`.
    #[arg(long, global = true, env = "BERTH_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read objects from a source, compile the table and serve it to Envoy, recompiling on every change.
    Run(RunArgs),
    /// Compile the objects under PATH once and print the routes and every problem; exit 1 if there is any.
    Check(CheckArgs),
    /// Show the routes, addresses, endpoint health and errors of a running controller.
    Routes(RoutesArgs),
    /// Write an Envoy bootstrap and Berth's listeners and clusters (LDS/CDS files) to run Berth's filter.
    EnvoyConfig(EnvoyConfigArgs),
    /// Print the CustomResourceDefinition of PortAllocation (berth.dev/v1alpha1) as YAML, for `kubectl apply -f -`.
    Crdgen,
    /// Print an Istio EnvoyFilter that runs Berth's filter in an ingress gateway, loading it from the controller.
    IstioConfig(IstioConfigArgs),
    /// Copy the filter module this image ships to DEST (for an init container handing it to a stock Envoy).
    WriteFilter(WriteFilterArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Where objects come from: `dir:PATH` (YAML files under PATH, reloaded on change) or `kube` (a cluster's
    /// API server, watched; see --kubeconfig, --context, --namespace).
    #[arg(long, env = "BERTH_SOURCE")]
    pub source: Source,
    /// With `--source kube`: the kubeconfig file to use. None (the default): the in-cluster configuration, else
    /// `$KUBECONFIG` or `~/.kube/config`.
    #[arg(long, env = "BERTH_KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// With `--source kube`: the kubeconfig context to use. None (the default): its current context.
    #[arg(long, env = "BERTH_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// With `--source kube`: read namespaced objects of this namespace only. None (the default): every namespace
    /// except kube-system. Nodes, IngressClasses and PortAllocations are cluster-wide either way.
    #[arg(long, env = "BERTH_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,
    /// With `--source kube`: the address clients reach Berth's proxy at (an IP or a host name), written to the
    /// `status.loadBalancer.ingress` of every Ingress Berth serves. None (the default): Ingress status is left
    /// alone.
    #[arg(long, env = "BERTH_INGRESS_ADDRESS", value_name = "HOST_OR_IP")]
    pub ingress_address: Option<String>,
    /// Address of the HTTP API Envoy fetches the table from.
    #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Where traffic goes: `node-port` (every Ready node's address, the Service's nodePort) or `pods` (the
    /// Service's EndpointSlices). A Service's annotation `berth.dev/backends` overrides it.
    #[arg(long, env = "BERTH_BACKENDS", default_value = "node-port")]
    pub backends: BackendMode,
    /// File that keeps the ports handed out to tcp routes across restarts: JSON, `{"ports": {"VirtualService
    /// default/db tcp[0]": 31000}}`, written atomically whenever they change; a missing file starts empty, an
    /// unreadable or corrupt one stops the controller. Without it (the default) ports live only in memory and a
    /// restart may hand out different ones. In directory mode addresses are never written into your YAML: see them
    /// here, with `berth routes`, or at /v1/routes.
    #[arg(long, env = "BERTH_STATE", value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// The filter module to serve at /v1/filter.wasm, for an Envoy that loads it remotely (the Istio gateway; see
    /// `berth istio-config`). Read once at start. Default: /usr/share/berth/berth_filter.wasm when that file
    /// exists (the image ships it), otherwise none.
    #[arg(long, env = "BERTH_FILTER_WASM", value_name = "PATH")]
    pub filter_wasm: Option<PathBuf>,
    /// How often each backend endpoint is health-checked, e.g. `5s` or `500ms` (at least 100ms), unless its
    /// Service sets `berth.dev/health-check-interval`. Endpoints that fail their checks leave the table until
    /// they pass again; see the README's "Health checks".
    #[arg(long, env = "BERTH_HEALTH_INTERVAL", default_value = "5s", value_parser = parse_health_interval)]
    pub health_interval: Duration,
    /// The panic threshold, in percent of a backend's checked endpoints, as in Envoy: when fewer than this share
    /// are healthy (say every check fails at once, which points at the network or the controller rather than the
    /// backends), the backend is routed to all of them as if none had failed, and `berth routes` and the log say
    /// it is in panic. 0 turns panic routing off: failed endpoints are always left out.
    #[arg(long, env = "BERTH_HEALTH_PANIC_THRESHOLD", default_value = "50", value_parser = clap::value_parser!(u8).range(0..=100))]
    pub health_panic_threshold: u8,
    /// The port clients reach TLS passthrough routes at (VirtualService `tls` routes, routed by server name): written
    /// into their addresses (`a.example.com:443`), and the only `port` a tls match may name. Envoy's TLS listener
    /// (`berth envoy-config --tls-port`) serves it.
    #[arg(long, env = "BERTH_TLS_PORT", default_value_t = crate::compiler::tls::DEFAULT_TLS_PORT)]
    pub tls_port: u16,
    /// With `--source kube`: the namespace whose Secrets named `kubeconfig-<cluster>-<last 4 hex digits of the
    /// cluster's UUID>` (key `kubeconfig`) add clusters to watch; see the README's "Many clusters". Default: the
    /// controller's own namespace (`POD_NAMESPACE`), else berth-system.
    #[arg(long, env = "POD_NAMESPACE", default_value = "berth-system", value_name = "NS")]
    pub cluster_secrets_namespace: String,
    /// With `--source kube`: make each other cluster's API server reachable through Envoy's TLS listener at
    /// `<cluster>.<DOMAIN>` (TLS passthrough by server name), e.g. `kubectl --server https://alpha.DOMAIN`. Point
    /// a DNS wildcard `*.DOMAIN` at Envoy. None (the default): no such routes.
    #[arg(long, env = "BERTH_API_DOMAIN", value_name = "DOMAIN")]
    pub api_domain: Option<String>,
    #[command(flatten)]
    pub leader: LeaderArgs,
    #[command(flatten)]
    pub api: ApiServerArgs,
}

/// How the API server protects itself from its clients ([`crate::serve`]).
#[derive(Debug, Args)]
pub struct ApiServerArgs {
    /// The most connections the API server holds open at once; more wait until one closes. Held under half the
    /// process's open-files limit in any case, so that health checks always have file descriptors.
    #[arg(long, env = "BERTH_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
    /// How long a client has to send a request's headers, from opening the connection or from the end of its last
    /// response; a connection that takes longer (or stays idle longer) is closed. Requests being answered, like a
    /// long poll of /v1/table, are never cut.
    #[arg(long, env = "BERTH_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
}

impl ApiServerArgs {
    pub fn limits(&self) -> crate::serve::Limits {
        crate::serve::Limits { max_connections: self.max_connections.max(1), header_timeout: self.header_timeout }
    }
}

/// Leader election among replicas of `berth run --source kube`.
#[derive(Debug, Args)]
pub struct LeaderArgs {
    /// Campaign for a Lease and, unless leading, only watch and serve the table: the leader alone hands out ports
    /// and writes annotations, status and Events. Every replica makes session cookies with the key in the Secret
    /// `berth-session-key` (created by the first). Run two or more replicas with it for high availability.
    #[arg(long, env = "BERTH_LEADER_ELECT")]
    pub leader_elect: bool,
    /// The namespace of the Lease and of the session key's Secret: the controller's own.
    #[arg(long, env = "POD_NAMESPACE", default_value = "berth-system", value_name = "NS")]
    pub leader_elect_namespace: String,
    /// The name of the Lease.
    #[arg(long, env = "BERTH_LEADER_ELECT_LEASE", default_value = "berth", value_name = "NAME")]
    pub leader_elect_lease: String,
    /// How long a leader that stopped renewing keeps the Lease before another replica takes over.
    #[arg(long, env = "BERTH_LEADER_ELECT_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_duration: Duration,
    /// This replica's name in the Lease. Default: the pod name, else the host name and process id.
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    pub leader_elect_identity: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A directory of YAML files (read recursively) or one YAML file.
    pub path: PathBuf,
    /// As for `berth run`.
    #[arg(long, env = "BERTH_BACKENDS", default_value = "node-port")]
    pub backends: BackendMode,
    /// A `berth run --state` file to take held ports from (only read), so the addresses shown are those `berth
    /// run` would keep. None (the default): ports are handed out afresh.
    #[arg(long, env = "BERTH_STATE", value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// As for `berth run`.
    #[arg(long, env = "BERTH_TLS_PORT", default_value_t = crate::compiler::tls::DEFAULT_TLS_PORT)]
    pub tls_port: u16,
}

#[derive(Debug, Args)]
pub struct RoutesArgs {
    /// The running controller: a URL, or just `HOST:PORT`.
    #[arg(long, env = "BERTH_CONTROLLER", default_value = "http://127.0.0.1:8081")]
    pub controller: String,
    /// `text` for people, or `json` / `yaml`: the whole `/v1/routes` document, for scripts.
    #[arg(long, short = 'o', env = "BERTH_OUTPUT", default_value = "text")]
    pub output: RoutesOutput,
}

/// `berth routes -o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoutesOutput {
    Text,
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub struct EnvoyConfigArgs {
    /// Where `berth run` serves the table (`HOST:PORT`, an IP or a DNS name such as the controller's Service; an
    /// `http://` prefix is accepted).
    #[arg(long, env = "BERTH_CONTROLLER", default_value = "127.0.0.1:8081")]
    pub controller: crate::istio_config::ServiceAddr,
    /// Path of the built filter, `berth_filter.wasm`.
    #[arg(long, env = "BERTH_WASM", default_value = "target/berth_filter.wasm")]
    pub wasm: PathBuf,
    /// Address of Envoy's HTTP listener.
    #[arg(long, env = "BERTH_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    pub http_listen: SocketAddr,
    /// Address of Envoy's admin interface.
    #[arg(long, env = "BERTH_ADMIN", default_value = "127.0.0.1:9901")]
    pub admin: SocketAddr,
    /// Ports to listen on for TCP routes, at the HTTP listener's IP: ranges like `31000-31010` or single ports,
    /// comma-separated or repeated. None (the default): no TCP listener.
    #[arg(long, env = "BERTH_TCP_PORTS", value_delimiter = ',', value_name = "RANGES")]
    pub tcp_ports: Vec<berth_table::PortRange>,
    /// Port to listen on for TLS passthrough routes (by server name), at the HTTP listener's IP: the port given to
    /// `berth run --tls-port`. None (the default): no TLS listener.
    #[arg(long, env = "BERTH_TLS_PORT", value_name = "PORT")]
    pub tls_port: Option<u16>,
    /// Client connections one Envoy accepts at most (the overload manager's global limit); beyond, new
    /// connections are closed at once.
    #[arg(long, env = "BERTH_MAX_DOWNSTREAM_CONNECTIONS", default_value_t = envoy_edge::DEFAULT_MAX_DOWNSTREAM_CONNECTIONS)]
    pub max_downstream_connections: u64,
    #[command(flatten)]
    pub edge: EdgeArgs,
    /// Where to write `bootstrap.yaml` (for `envoy -c`), `cds.yaml` and `lds.yaml` (Berth's clusters and
    /// listeners, which Envoy reads as dynamic resources and reloads when they are replaced). Created if missing.
    #[arg(long, env = "BERTH_ENVOY_OUT_DIR", default_value = "berth-envoy", value_name = "DIR")]
    pub out_dir: PathBuf,
    /// The directory Envoy reads `cds.yaml` and `lds.yaml` from, when it is not `--out-dir` (e.g. where a
    /// ConfigMap is mounted in Envoy's pod). None (the default): `--out-dir`, made absolute.
    #[arg(long, env = "BERTH_ENVOY_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
}

/// Connection limits and HTTP settings of Berth's clusters and listeners, for `envoy-config` and `istio-config`.
#[derive(Debug, Args)]
pub struct EdgeArgs {
    /// Connections to all endpoints together, per Berth cluster (HTTP, TCP and TLS each have one). Default: no
    /// limit, as in Istio's gateways.
    #[arg(long, env = "BERTH_CLUSTER_MAX_CONNECTIONS", default_value_t = envoy_edge::UNLIMITED)]
    pub cluster_max_connections: u32,
    /// HTTP requests waiting for an upstream connection, per Berth cluster. Default: no limit.
    #[arg(long, env = "BERTH_CLUSTER_MAX_PENDING_REQUESTS", default_value_t = envoy_edge::UNLIMITED)]
    pub cluster_max_pending_requests: u32,
    /// Requests in flight, per Berth cluster. Default: no limit.
    #[arg(long, env = "BERTH_CLUSTER_MAX_REQUESTS", default_value_t = envoy_edge::UNLIMITED)]
    pub cluster_max_requests: u32,
    /// Retries in flight, per Berth cluster. Default: no limit.
    #[arg(long, env = "BERTH_CLUSTER_MAX_RETRIES", default_value_t = envoy_edge::UNLIMITED)]
    pub cluster_max_retries: u32,
    /// Connections one endpoint may hold per Envoy; beyond, its own requests and connections wait for one to
    /// close, and other endpoints are unaffected.
    #[arg(long, env = "BERTH_ENDPOINT_MAX_CONNECTIONS", default_value_t = envoy_edge::DEFAULT_ENDPOINT_MAX_CONNECTIONS)]
    pub endpoint_max_connections: u32,
    /// How long a client may take to send a request's headers before Envoy closes the connection.
    #[arg(long, env = "BERTH_REQUEST_HEADERS_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_headers_timeout: Duration,
    /// Proxies in front of Envoy (e.g. a cloud load balancer) whose `x-forwarded-for` entries are trusted. 0 (the
    /// default): the connection's peer is the client.
    #[arg(long, env = "BERTH_XFF_NUM_TRUSTED_HOPS", default_value_t = 0)]
    pub xff_num_trusted_hops: u32,
}

impl EdgeArgs {
    /// The settings, with a client-connection cap (only `envoy-config` renders one).
    pub fn settings(&self, max_downstream_connections: u64) -> envoy_edge::EdgeSettings {
        envoy_edge::EdgeSettings {
            cluster_max_connections: self.cluster_max_connections,
            cluster_max_pending_requests: self.cluster_max_pending_requests,
            cluster_max_requests: self.cluster_max_requests,
            cluster_max_retries: self.cluster_max_retries,
            endpoint_max_connections: self.endpoint_max_connections,
            max_downstream_connections,
            request_headers_timeout: self.request_headers_timeout,
            xff_num_trusted_hops: self.xff_num_trusted_hops,
        }
    }
}

#[derive(Debug, Args)]
pub struct IstioConfigArgs {
    /// The controller's Service as the gateway resolves it (`HOST:PORT`): Envoy fetches the module and the table
    /// there.
    #[arg(
        long,
        env = "BERTH_CONTROLLER_SERVICE",
        default_value = "berth-controller.berth-system.svc.cluster.local:8081"
    )]
    pub controller_service: crate::istio_config::ServiceAddr,
    /// The module the controller serves (`berth run --filter-wasm`): only read for its sha256, which Envoy checks.
    #[arg(long, env = "BERTH_WASM", default_value = "target/berth_filter.wasm")]
    pub wasm: PathBuf,
    /// The gateway pod's port for Berth's HTTP listener: a port no Istio Gateway uses on the same gateway pods
    /// (not 8080 or 8443, where Gateway servers on 80 and 443 listen, nor Istio's 15000-15099).
    #[arg(long, env = "BERTH_HTTP_PORT", default_value_t = crate::istio_config::DEFAULT_HTTP_PORT)]
    pub http_port: u16,
    /// Ports for TCP routes, as for `berth envoy-config` (the PortAllocation ranges). None (the default): no TCP
    /// listener.
    #[arg(long, env = "BERTH_TCP_PORTS", value_delimiter = ',', value_name = "RANGES")]
    pub tcp_ports: Vec<berth_table::PortRange>,
    /// The gateway pod's port for TLS passthrough routes, as for `berth envoy-config`. None (the default): no TLS
    /// listener.
    #[arg(long, env = "BERTH_TLS_PORT", value_name = "PORT")]
    pub tls_port: Option<u16>,
    /// The gateway pods' labels (`KEY=VALUE`, comma-separated or repeated) the EnvoyFilter applies to.
    #[arg(long, env = "BERTH_GATEWAY_SELECTOR", value_delimiter = ',', default_value = "istio=ingressgateway")]
    pub gateway_selector: Vec<crate::istio_config::Label>,
    /// The gateway's namespace, where the EnvoyFilter goes.
    #[arg(long, env = "BERTH_GATEWAY_NAMESPACE", default_value = "istio-system")]
    pub namespace: String,
    #[command(flatten)]
    pub edge: EdgeArgs,
    /// Accept 8080, 8443 and 15000-15099 for Berth's listeners: a stock Istio gateway listens there itself, so
    /// only for a gateway known not to.
    #[arg(long, env = "BERTH_ALLOW_ISTIO_PORTS")]
    pub allow_istio_ports: bool,
}

#[derive(Debug, Args)]
pub struct WriteFilterArgs {
    /// The module to copy.
    #[arg(long, env = "BERTH_WASM", default_value = "/usr/share/berth/berth_filter.wasm")]
    pub wasm: PathBuf,
    /// Where to write it.
    pub dest: PathBuf,
}

/// Where a controller reads objects from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `dir:PATH`
    Dir(PathBuf),
    /// `kube`: the cluster of the kubeconfig (or the one berth runs in).
    Kube,
}

impl FromStr for Source {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "kube" {
            return Ok(Source::Kube);
        }
        match s.split_once(':') {
            Some(("dir", path)) if !path.is_empty() => Ok(Source::Dir(PathBuf::from(path))),
            Some(("dir", _)) => Err("dir: needs a path, e.g. dir:examples".to_string()),
            _ => Err(format!("{s:?} is not a source; use dir:PATH (e.g. dir:examples) or kube")),
        }
    }
}

/// The form it was given in, which also names the source in the index.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Dir(path) => write!(f, "dir:{}", path.display()),
            Source::Kube => f.write_str("kube"),
        }
    }
}

fn parse_health_interval(s: &str) -> Result<Duration, String> {
    let interval = parse_duration(s)?;
    if interval < MIN_INTERVAL {
        return Err(format!("{s:?} is shorter than {}", format_duration(MIN_INTERVAL)));
    }
    Ok(interval)
}

/// The base URL of a controller given as a URL or as `HOST:PORT`.
pub fn controller_url(given: &str) -> String {
    let url = if given.contains("://") { given.to_string() } else { format!("http://{given}") };
    url.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_dir_sources() {
        assert_eq!("dir:examples".parse(), Ok(Source::Dir("examples".into())));
        assert_eq!("dir:/a:b".parse(), Ok(Source::Dir("/a:b".into())));
        assert!("dir:".parse::<Source>().is_err());
        assert!("kub".parse::<Source>().unwrap_err().contains("dir:PATH"));
        assert_eq!("kube".parse(), Ok(Source::Kube));
        assert_eq!(Source::Kube.to_string(), "kube");
        assert_eq!(Source::Dir("examples".into()).to_string(), "dir:examples");
    }

    #[test]
    fn run_has_defaults_for_everything_but_the_source() {
        let cli = Cli::try_parse_from(["berth", "run", "--source", "dir:x"]).unwrap();
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert_eq!(args.listen, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(args.backends, BackendMode::NodePort);
        let cli = Cli::try_parse_from(["berth", "run", "--source", "dir:x", "--backends", "pods"]).unwrap();
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert_eq!(args.backends, BackendMode::Pods);
        assert!(Cli::try_parse_from(["berth", "run", "--source", "dir:x", "--backends", "nodes"]).is_err());
        assert_eq!(args.health_interval, Duration::from_secs(5));
        let cli = Cli::try_parse_from(["berth", "run", "--source", "dir:x", "--health-interval", "200ms"]).unwrap();
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert_eq!(args.health_interval, Duration::from_millis(200));
        for bad in ["5", "10ms"] {
            assert!(Cli::try_parse_from(["berth", "run", "--source", "dir:x", "--health-interval", bad]).is_err());
        }
    }

    #[test]
    fn run_keeps_ports_in_memory_unless_given_a_state_file() {
        let cli = Cli::try_parse_from(["berth", "run", "--source", "dir:x"]).unwrap();
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert_eq!(args.state, None);
        let cli = Cli::try_parse_from(["berth", "run", "--source", "dir:x", "--state", "/var/lib/berth.json"]).unwrap();
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert_eq!(args.state, Some("/var/lib/berth.json".into()));
        assert!(matches!(Cli::try_parse_from(["berth", "crdgen"]).unwrap().command, Command::Crdgen));
    }

    #[test]
    fn leader_election_is_off_unless_asked_and_its_duration_reads_like_other_durations() {
        let run = |args: &[&str]| {
            let cli = Cli::try_parse_from(["berth", "run", "--source", "kube"].iter().chain(args))?;
            let Command::Run(args) = cli.command else { panic!("not run") };
            Ok::<_, clap::Error>(args.leader)
        };
        let leader = run(&[]).unwrap();
        assert!(!leader.leader_elect);
        assert_eq!(leader.leader_elect_duration, Duration::from_secs(15));
        let leader = run(&["--leader-elect", "--leader-elect-duration", "2m"]).unwrap();
        assert_eq!((leader.leader_elect, leader.leader_elect_duration), (true, Duration::from_secs(120)));
        assert_eq!(
            run(&["--leader-elect-duration", "1.5s"]).unwrap().leader_elect_duration,
            Duration::from_millis(1500)
        );
        let error = run(&["--leader-elect-duration", "soon"]).unwrap_err().to_string();
        assert!(error.contains("is not a duration; write it like 5s, 500ms or 1m"), "{error}");
    }

    #[test]
    fn controller_addresses_take_either_form() {
        assert_eq!(controller_url("127.0.0.1:9000"), "http://127.0.0.1:9000");
        assert_eq!(controller_url("http://localhost:9000/"), "http://localhost:9000");
    }

    #[test]
    fn envoy_config_tcp_ports_are_comma_separated_or_repeated_and_default_to_none() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(["berth", "envoy-config"].iter().chain(args)).map_err(|e| e.to_string())?;
            let Command::EnvoyConfig(args) = cli.command else { panic!("not envoy-config") };
            Ok::<_, String>(args.tcp_ports.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        assert_eq!(parse(&[]), Ok(vec![]));
        assert_eq!(parse(&["--tcp-ports", "31000-31010,32000"]), Ok(vec!["31000-31010".into(), "32000".into()]));
        assert_eq!(parse(&["--tcp-ports", "31000", "--tcp-ports", "31005-31006"]).unwrap().len(), 2);
        let err = parse(&["--tcp-ports", "31010-31000"]).unwrap_err();
        assert!(err.contains("ends before it starts"), "{err}");
        assert!(parse(&["--tcp-ports", "db"]).is_err());
    }
}
