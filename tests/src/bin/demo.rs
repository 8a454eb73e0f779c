//! `make run`: the embedded default. Example backends on loopback, the controller reading `examples/`, and stock
//! Envoy with the Berth filter, until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use berth_tests::{Backend, Controller, Envoy, TcpBackend, paths};

const CONTROLLER: &str = "127.0.0.1:8081";
const LISTENER: &str = "127.0.0.1:8080";
const ADMIN: &str = "127.0.0.1:9901";
/// The NodePorts of examples/services.yaml on the example node 127.0.0.1, and who answers there.
const BACKENDS: [(&str, &str, u16); 3] = [
    ("127.0.0.1:30081", "service 1", 200),
    ("127.0.0.1:30082", "service 2", 200),
    ("127.0.0.1:30404", "default backend - 404", 404),
];
/// The NodePort of the TCP example's Service, where a greeting echo server listens.
const TCP_BACKEND: &str = "127.0.0.1:30007";
/// The ports of examples/tcp.yaml's PortAllocation, where Envoy listens for TCP.
const TCP_PORTS: &str = "31000-31010";

fn main() -> anyhow::Result<()> {
    let examples = std::env::args().skip_while(|a| a != "--examples").nth(1).map(PathBuf::from);
    let examples = examples.unwrap_or_else(paths::examples);
    let logs = paths::workspace().join("target/demo");
    std::fs::create_dir_all(&logs)?;

    let _backends: Vec<Backend> =
        BACKENDS.iter().map(|(addr, name, status)| Backend::start_on(parse(addr), name, *status)).collect();
    let _echo = TcpBackend::start_on(parse(TCP_BACKEND), Some("hello from the echo service\n".to_string()));
    // Assigned ports persist here, so a restarted demo gives every workload the port it had.
    let state = format!("--state={}", logs.join("state.json").display());
    let controller = Controller::start_with(parse(CONTROLLER), &examples, &logs, &[state]);
    let tcp_ports = format!("--tcp-ports={TCP_PORTS}");
    let envoy = Envoy::start_on(controller.addr, parse(LISTENER), parse(ADMIN), &logs, &[tcp_ports]);
    envoy.wait_for_backend("website8080.com", "/", "service 1");

    println!(
        "\nBerth is running: Envoy on http://{LISTENER} (admin http://{ADMIN}), controller on http://{CONTROLLER}, \
         reading {dir}.\n\nTry:\n  \
         curl -i -H 'Host: website8080.com' http://{LISTENER}/\n  \
         curl -i -H 'Host: website9090.com' http://{LISTENER}/\n  \
         curl -i -H 'Host: website.com' http://{LISTENER}/eightyeighty\n  \
         curl -i -H 'Host: website.com' http://{LISTENER}/ninetyninety\n  \
         curl -i -H 'Host: nothing-here.com' http://{LISTENER}/\n  \
         nc localhost 31000      # TCP: the echo workload on the port Berth assigned it\n  \
         target/release/berth routes --controller http://{CONTROLLER}\n\n\
         Edit the YAML in {dir} and routing follows within a second. Logs: {logs}/*.log. Ctrl-C stops everything.",
        dir = examples.display(),
        logs = logs.display(),
    );
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(tokio::signal::ctrl_c())?;
    println!("\nstopping");
    Ok(())
}

fn parse(addr: &str) -> SocketAddr {
    addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"))
}
