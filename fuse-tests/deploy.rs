//! What ships for deployment is valid as shipped: the Kubernetes manifests against the
//! Kubernetes schemas (kubernetes-validate, offline, strict). The nginx tier config runs in
//! the tier tests.

use std::path::{Path, PathBuf};

fn validator() -> PathBuf {
    let p = std::env::var_os("DATASTORE_TEST_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/kubernetes-validate")
        });
    assert!(
        p.exists(),
        "kubernetes-validate not found at {} (or $DATASTORE_TEST_KUBERNETES_VALIDATE): run ./scripts/test, which installs it",
        p.display()
    );
    p
}

#[test]
fn the_kubernetes_manifests_pass_the_schemas() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "config.yaml",
        "daemonset.yaml",
        "example-pod.yaml",
        "tier.yaml",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    let out = std::process::Command::new(validator())
        .arg("--strict")
        .args(&files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for kind in [
        "daemonset/",
        "deployment/",
        "service/",
        "networkpolicy/",
        "pod/",
        "configmap/",
        "secret/",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}")),
            "{kind}: {text}"
        );
    }
    assert!(!text.contains("WARN") && !text.contains("ERROR"), "{text}");
}
