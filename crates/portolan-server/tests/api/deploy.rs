//! The deployment files under `deploy/`: the Kubernetes manifests validate against Kubernetes'
//! own schemas (kubernetes-validate from PyPI, pinned in `tests/kubernetes/requirements.txt`) and
//! keep the security settings the image is built for; the systemd unit passes
//! `systemd-analyze verify` without a warning.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_kubernetes_manifests_validate_and_keep_the_security_settings() {
    let dir = deploy().join("kubernetes");
    let mut manifests: Vec<String> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    manifests.sort();
    let mut listed: Vec<String> = yaml(&dir.join("kustomization.yaml"))["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r.as_str().map(String::from))
        .collect();
    listed.sort();
    assert_eq!(listed, manifests, "the kustomization lists every manifest");

    let python = crate::python_harness("kubernetes");
    let validate = python.with_file_name("kubernetes-validate");
    let output = Command::new(&validate)
        .args(["--strict", "--kubernetes-version", "1.30.0"])
        .args(&manifests)
        .current_dir(&dir)
        .output()
        .expect("kubernetes-validate runs");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{said}");
    assert_eq!(said.matches(" passed for resource ").count(), manifests.len(), "{said}");

    let deployment = yaml(&dir.join("deployment.yaml"));
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    // Secrets arrive as files from the Secret's volume, never as values in the environment.
    let mounted = container["volumeMounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "secrets"))
        .and_then(|m| m["mountPath"].as_str())
        .expect("the Secret is mounted");
    for variable in container["env"].as_array().expect("env") {
        let name = variable["name"].as_str().unwrap_or_default();
        assert!(!["PORTOLAN_DATABASE_URL", "PORTOLAN_SECRETS_KEY", "PORTOLAN_AUDIT_KEY"].contains(&name), "{name}");
        if name.ends_with("_KEY_FILE") || name.ends_with("_URL_FILE") {
            assert!(variable["value"].as_str().is_some_and(|v| v.starts_with(mounted)), "{variable}");
        }
    }

    // The image runs as the user the pod asks for, and checks itself with the binary alone.
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).expect("Dockerfile");
    let user = pod["securityContext"]["runAsUser"].as_u64().expect("runAsUser");
    assert!(dockerfile.contains(&format!("\nUSER {user}:{user}\n")), "the image's USER is {user}");
    assert!(dockerfile.contains("HEALTHCHECK") && dockerfile.contains("\"portolan\", \"probe\""));
}

#[test]
fn the_systemd_unit_verifies_without_a_warning() {
    let unit = std::fs::read_to_string(deploy().join("systemd/portolan.service")).expect("the unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/portolan serve"));
    // The binary is not installed here: verify the unit around a stand-in for it.
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("portolan.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/portolan", "/bin/true")).expect("write");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze runs (Debian's systemd package)");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && said.trim().is_empty(), "{said}");
}
