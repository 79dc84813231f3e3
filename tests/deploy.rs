//! The Kubernetes manifests (`deploy/kubernetes/`) against the Kubernetes
//! API schemas, offline: `kubernetes-validate` in a throwaway venv, strict
//! (an unknown field is an error), for the oldest Kubernetes with every
//! field they use (Indexed Jobs' completion-index annotation: 1.28) and
//! the newest the package knows. And what the schemas cannot see: each
//! Indexed Job asks kfsim for as many shards as it has completions, and
//! names its shard folders by the completion index.

mod sdk_util;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const VALIDATE: &str = "kubernetes-validate==1.37.0";

fn manifests() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "the ConfigMap, the volume, two Indexed Jobs and the merge Job: {files:?}");
    files
}

fn python() -> PathBuf {
    sdk_util::venv("k8s-venv", &[VALIDATE], "import kubernetes_validate, yaml")
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    let py = python();
    let validate = py.parent().unwrap().join("kubernetes-validate");
    for version in ["1.28.0", "1.37.0"] {
        let out = Command::new(&validate)
            .args(["--strict", "--kubernetes-version", version])
            .args(manifests())
            .output()
            .unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "Kubernetes {version}:\n{text}");
        assert_eq!(text.matches(" passed ").count(), manifests().len(), "{text}");
    }
    // the check fails on a broken manifest: a Job whose completions is text
    let bad = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bad-job.yaml");
    let job =
        std::fs::read_to_string(manifests().iter().find(|p| p.ends_with("live-job.yaml")).unwrap()).unwrap();
    std::fs::write(&bad, job.replace("completions: 4", "completions: four")).unwrap();
    let out = Command::new(&validate).arg("--strict").arg(&bad).output().unwrap();
    assert!(!out.status.success(), "a Job with completions: four is refused");
}

/// Every document of every manifest, as JSON.
fn documents() -> Vec<Value> {
    let script = "import sys, json, yaml\nprint(json.dumps([d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]))";
    let out = Command::new(python()).args(["-c", script]).args(manifests()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn indexed_jobs_ask_kfsim_for_as_many_shards_as_completions() {
    let docs = documents();
    let jobs: Vec<&Value> =
        docs.iter().filter(|d| d["kind"] == "Job" && d["spec"]["completionMode"] == "Indexed").collect();
    assert_eq!(jobs.len(), 2, "one for live shards, one for a sweep");
    for job in jobs {
        let name = job["metadata"]["name"].as_str().unwrap();
        let completions = job["spec"]["completions"].as_u64().unwrap();
        assert_eq!(job["spec"]["parallelism"].as_u64(), Some(completions), "{name}: every shard at once");
        let c = &job["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        let after = |flag: &str| args.iter().position(|a| *a == flag).map(|i| args[i + 1]);
        assert_eq!(after("--shards"), Some(completions.to_string().as_str()), "{name}");
        assert!(after("--out").is_some_and(|o| o.ends_with("shard-$(SHARD)")), "{name}: {args:?}");
        let env = c["env"].as_array().unwrap();
        let shard = env.iter().find(|e| e["name"] == "SHARD").unwrap();
        assert_eq!(
            shard["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.annotations['batch.kubernetes.io/job-completion-index']",
            "{name}"
        );
        // every volume it mounts is declared, and the shards' is the claim
        let vols = job["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
        for m in c["volumeMounts"].as_array().unwrap() {
            assert!(vols.iter().any(|v| v["name"] == m["name"]), "{name}: {m}");
        }
        if name == "kfsim-live" {
            assert!(args.contains(&"--barrier"), "live shards start together");
            assert_eq!(job["spec"]["backoffLimit"], 0, "a live shard is not sent twice");
        }
    }
    let claims: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "PersistentVolumeClaim").collect();
    assert_eq!(claims[0]["spec"]["accessModes"][0], "ReadWriteMany", "every pod mounts the shards' folder");
}
