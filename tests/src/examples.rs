//! The shipped examples, copied where a test can run them beside others.

use crate::manifests::ManifestDir;
use crate::paths;

/// Copies examples/ into `dir` with its NodePorts (`(nodePort, port)`) and TCP port range moved to free ports,
/// so tests can run side by side.
pub fn examples_on(dir: &ManifestDir, node_ports: &[(&str, u16)], tcp_range: (u16, u16)) {
    for entry in std::fs::read_dir(paths::examples()).expect("read examples/") {
        let path = entry.expect("examples/ entry").path();
        let mut yaml = std::fs::read_to_string(&path).expect("read an example");
        for (node_port, port) in node_ports {
            yaml = yaml.replace(&format!("nodePort: {node_port}"), &format!("nodePort: {port}"));
        }
        yaml = yaml.replace("start: 31000", &format!("start: {}", tcp_range.0));
        yaml = yaml.replace("end: 31010", &format!("end: {}", tcp_range.1));
        let name = path.file_name().and_then(|n| n.to_str()).expect("a file name");
        dir.write(name, &yaml);
    }
}
