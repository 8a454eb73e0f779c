//! The standalone Envoy deployment (`envoy/deploy`): its config (bootstrap, LDS and CDS files) is exactly what
//! `berth envoy-config` renders from the arguments the bootstrap records, and validates in Envoy; kubectl applies
//! the kustomization against the Kubernetes API test server; its Service exposes every listener of the config; its probe and drain commands do what they say
//! against a real Envoy; and `berth write-filter`, its init step, copies the module.

use std::path::PathBuf;
use std::process::Command;

use berth_tests::kube::KubeApiServer;
use berth_tests::manifests::{self, Rule};
use berth_tests::{Backend, Stack, client, envoy, paths};
use serde_yaml::Value;

fn deploy_dir() -> PathBuf {
    paths::workspace().join("envoy").join("deploy")
}

/// The files of the ConfigMap `berth-envoy`: the bootstrap and the LDS and CDS files it names.
const CONFIG_FILES: [&str; 3] = ["bootstrap.yaml", "cds.yaml", "lds.yaml"];

/// The whole text of a shipped config file (under `envoy/deploy/envoy`).
fn shipped_file(name: &str) -> String {
    std::fs::read_to_string(deploy_dir().join("envoy").join(name)).unwrap()
}

/// A shipped config file without its leading comment lines: what `berth envoy-config` wrote.
fn rendered_part(text: &str) -> String {
    text.lines().skip_while(|line| line.starts_with('#')).map(|line| format!("{line}\n")).collect()
}

/// The `berth envoy-config` arguments the first line of the shipped bootstrap records.
fn shipped_args() -> Vec<String> {
    let text = shipped_file("bootstrap.yaml");
    let args = text
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("# berth envoy-config "))
        .expect("the bootstrap's first line records the `berth envoy-config` arguments");
    args.split_whitespace().map(String::from).collect()
}

/// The value of `--NAME=VALUE` among the recorded arguments.
fn shipped_arg(name: &str) -> String {
    let prefix = format!("--{name}=");
    let args = shipped_args();
    let value = args.iter().find_map(|a| a.strip_prefix(&prefix));
    value.unwrap_or_else(|| panic!("the recorded arguments have no {prefix}")).to_string()
}

/// The Deployment's Envoy container.
fn envoy_container() -> Value {
    let text = std::fs::read_to_string(deploy_dir().join("deployment.yaml")).unwrap();
    let deployment: Value = serde_yaml::from_str(&text).unwrap();
    deployment["spec"]["template"]["spec"]["containers"][0].clone()
}

#[test]
fn the_shipped_config_is_what_berth_envoy_config_renders_and_envoy_validates() {
    let args = shipped_args();
    let work = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("rendered");
    let out_arg = format!("--out-dir={}", out_dir.display());
    let mut command = vec!["envoy-config", &out_arg];
    command.extend(args.iter().map(String::as_str));
    let rendered = berth_tests::controller::berth(&command);
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    for file in CONFIG_FILES {
        assert!(
            rendered_part(&shipped_file(file)) == std::fs::read_to_string(out_dir.join(file)).unwrap(),
            "envoy/deploy/envoy/{file} is not what its arguments render now: run `make envoy-deploy`"
        );
    }
    assert!(args.contains(&"--admin=127.0.0.1:9901".to_string()), "the admin interface stays inside the pod");

    // Validate the shipped files as Envoy in the pod reads them, from a copy where the module path (the init
    // container's volume) is the build and the config directory (the ConfigMap's mount) is the copy's.
    let (module_path, config_dir) = (shipped_arg("wasm"), shipped_arg("config-dir"));
    let copy = work.path().join("shipped");
    std::fs::create_dir(&copy).unwrap();
    for file in CONFIG_FILES {
        let text = shipped_file(file)
            .replace(&module_path, paths::wasm().to_str().unwrap())
            .replace(&config_dir, copy.to_str().unwrap());
        std::fs::write(copy.join(file), text).unwrap();
    }
    envoy::validate(&copy.join("bootstrap.yaml")).unwrap();

    let container = envoy_container();
    let mounts = container["volumeMounts"].as_sequence().unwrap().clone();
    let mounted = |path: &str| mounts.iter().any(|m| path.starts_with(m["mountPath"].as_str().unwrap()));
    assert!(mounted(&module_path), "{module_path} is not on a volume of the Envoy container");
    // The ConfigMap's files appear right in its mount: the directory the bootstrap names for the LDS and CDS files.
    let config_mount = mounts.iter().find(|m| m["name"] == "config").expect("the config volume is mounted");
    assert_eq!(config_mount["mountPath"].as_str(), Some(config_dir.as_str()), "--config-dir is the ConfigMap's mount");
    let envoy_args = container["args"].as_sequence().unwrap();
    assert_eq!(envoy_args[..2], [Value::from("-c"), Value::from(format!("{config_dir}/bootstrap.yaml"))]);
}

/// CRDs standing in for the kinds the test server does not serve, with their real group, version and kind.
fn stand_ins() -> String {
    [("apps", "v1", "Deployment", "deployments"), ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets")]
        .iter()
        .map(|(group, version, kind, plural)| {
            format!(
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: \
                 {plural}.{group}}}\nspec:\n  group: {group}\n  scope: Namespaced\n  names: {{kind: {kind}, plural: \
                 {plural}, singular: {}}}\n  versions: [{{name: {version}, served: true, storage: true, schema: \
                 {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}}}]\n",
                kind.to_lowercase()
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

#[test]
fn kubectl_applies_the_deployment_and_its_service_exposes_every_listener() {
    let work = tempfile::tempdir().unwrap();
    let server = KubeApiServer::start(work.path());
    let api = server.kubectl();
    api.apply(&stand_ins());
    api.ok(&["create", "namespace", "berth-system"]);

    let built = api.ok(&["kustomize", "envoy/deploy"]);
    for kind in ["ConfigMap", "Service", "Deployment", "PodDisruptionBudget"] {
        assert!(built.contains(&format!("kind: {kind}\n")), "{kind} missing from the kustomization:\n{built}");
    }
    assert!(built.contains("image: envoyproxy/envoy:v1.40.0"), "stock Envoy, pinned to 1.40:\n{built}");
    let out = api.ok(&["apply", "-k", "envoy/deploy"]);
    for name in [
        "configmap/berth-envoy-",
        "service/berth-envoy created",
        "deployment.apps/berth-envoy created",
        "poddisruptionbudget.policy/berth-envoy created",
    ] {
        assert!(out.contains(name), "{name}:\n{out}");
    }

    // The ConfigMap holds the shipped files, and the Deployment mounts that very ConfigMap (name with its hash).
    let config_map = api.ok(&["get", "configmap", "-n", "berth-system", "-o", "jsonpath={.items[0].metadata.name}"]);
    for file in CONFIG_FILES {
        let key = format!("jsonpath={{.data.{}}}", file.replace('.', "\\."));
        let data = api.ok(&["get", "configmap", "-n", "berth-system", &config_map, "-o", &key]);
        assert_eq!(data, shipped_file(file), "{file} in the ConfigMap");
    }
    let volumes = api.ok(&[
        "get",
        "deployment",
        "-n",
        "berth-system",
        "berth-envoy",
        "-o",
        "jsonpath={.spec.template.spec.volumes}",
    ]);
    assert!(volumes.contains(&config_map), "{volumes}");

    // Every port Envoy listens on (but the admin interface) is a target port of the LoadBalancer Service.
    let service: Value =
        serde_yaml::from_str(&api.ok(&["get", "service", "-n", "berth-system", "berth-envoy", "-o", "yaml"])).unwrap();
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    let targets: Vec<u64> =
        service["spec"]["ports"].as_sequence().unwrap().iter().map(|p| p["targetPort"].as_u64().unwrap()).collect();
    let lds = work.path().join("lds.yaml");
    std::fs::write(&lds, shipped_file("lds.yaml")).unwrap();
    let mut listened = Vec::new();
    for listener in envoy::read_resources(&lds) {
        listened.push(listener["address"]["socket_address"]["port_value"].as_u64().unwrap());
        for extra in listener["additional_addresses"].as_array().into_iter().flatten() {
            listened.push(extra["address"]["socket_address"]["port_value"].as_u64().unwrap());
        }
    }
    listened.sort_unstable();
    let mut exposed = targets.clone();
    exposed.sort_unstable();
    assert_eq!(exposed, listened, "the Service's target ports are exactly Envoy's listeners");
}

/// Runs a probe or hook command of the Envoy container (`bash -c SCRIPT`) against an Envoy whose admin interface
/// is at `admin_port`, without its closing wait; true when it succeeds.
fn run_in_pod(command: &Value, admin_port: u16) -> bool {
    let command: Vec<&str> = command.as_sequence().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(command[..2], ["bash", "-c"]);
    let script = command[2].replace("127.0.0.1/9901", &format!("127.0.0.1/{admin_port}")).replace("sleep 25", "true");
    Command::new("bash").arg("-c").arg(script).status().unwrap().success()
}

#[test]
fn the_readiness_probe_and_the_drain_hook_work_against_envoy() {
    let web = Backend::start("web");
    let files = [
        manifests::cluster(),
        manifests::services(&[&web]),
        ("ingress.yaml", manifests::ingress("web", &[Rule("web.example", "/", "Prefix", "web", 80)])),
    ];
    let stack = Stack::start(&files);
    stack.envoy.wait_for_backend("web.example", "/", "web");
    let container = envoy_container();
    let (ready, pre_stop) =
        (&container["readinessProbe"]["exec"]["command"], &container["lifecycle"]["preStop"]["exec"]["command"]);
    let port = stack.envoy.admin.port();
    assert!(run_in_pod(ready, port), "ready while serving");

    // The hook: not ready any more (the load balancer stops sending), while the listeners still serve latecomers.
    assert!(run_in_pod(pre_stop, port), "the drain hook talks to the admin interface");
    assert!(!run_in_pod(ready, port), "not ready once draining");
    let late = client::get(stack.envoy.http, "web.example", "/").unwrap();
    assert_eq!(late.header("x-backend"), Some("web"), "{late:?}");
}

#[test]
fn write_filter_copies_the_module_for_the_init_container() {
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("berth_filter.wasm");
    let wasm = format!("--wasm={}", paths::wasm().display());
    let out = berth_tests::controller::berth(&["write-filter", &wasm, dest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(paths::wasm()).unwrap());
    let missing = berth_tests::controller::berth(&["write-filter", "--wasm=/nonexistent.wasm", dest.to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent.wasm"));
    // The Deployment's init container runs exactly this, into the volume Envoy reads the module from.
    let text = std::fs::read_to_string(deploy_dir().join("deployment.yaml")).unwrap();
    let deployment: Value = serde_yaml::from_str(&text).unwrap();
    let init = &deployment["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["args"][0], "write-filter");
    assert_eq!(init["args"][1], shipped_arg("wasm").as_str());
}
