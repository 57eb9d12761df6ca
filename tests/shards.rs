//! Array jobs: `ldctq bench --shard I/N` and `ldctq bench merge` give the unsharded run's per_image.csv
//! byte for byte and its statistics (recomputed on the whole, so also byte for byte); `ldctq score
//! --shard` splits the rows of one run; merging refuses incomplete or mismatched shards.
//!
//! Data: the small simulated set of the benchmark's tests (12 images, 96 x 96, with references);
//! model: the tiny fixture `tests/fixtures/quality/a_unit_seq`.
mod common;

use common::bench::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ldctq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ldctq")).args(args).output().unwrap()
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `ldctq bench` on the simulated set, batches of 5, with a failing plugin among the denoisers.
fn bench(out: &Path, extra: &[&str]) -> Output {
    let model = common::fixture("quality/a_unit_seq");
    let fail = spec(&plugin("fail"), None);
    let mut args = vec!["bench", "--model", s(&model), "--data"];
    let data = sim_set();
    args.extend([s(&data), "--out", s(out)]);
    args.extend([
        "--denoiser",
        "identity",
        "--denoiser",
        "smooth=gaussian:{\"sigma\":0.8}",
        "--denoiser",
        "median",
    ]);
    args.extend(["--denoiser", &fail, "--bootstrap", "300", "--batch", "5", "--seed", "3"]);
    args.extend(extra);
    ldctq(&args)
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn merged_shards_equal_the_unsharded_run() {
    let whole = common::temp_dir("shards-whole");
    ok(bench(&whole, &[]));
    // 12 images in batches of 5 over 3 shards: 5, 5 and 2 images; given to merge out of order.
    let parts: Vec<PathBuf> = (0..3).map(|i| common::temp_dir(&format!("shards-part{i}"))).collect();
    for (i, dir) in parts.iter().enumerate() {
        ok(bench(dir, &["--shard", &format!("{i}/3")]));
    }
    let rows = |dir: &Path| read(dir.join("per_image.csv")).lines().count() - 1;
    assert_eq!(parts.iter().map(|d| rows(d)).collect::<Vec<_>>(), [5, 5, 2]);
    let merged = common::temp_dir("shards-merged");
    let out = ok(ldctq(&["bench", "merge", s(&merged), s(&parts[2]), s(&parts[0]), s(&parts[1])]));
    println!("{}", String::from_utf8_lossy(&out.stdout));

    assert_eq!(read(merged.join("per_image.csv")), read(whole.join("per_image.csv")), "per_image.csv");
    assert_eq!(read(merged.join("summary.csv")), read(whole.join("summary.csv")), "summary.csv");
    let json =
        |dir: &Path| -> serde_json::Value { serde_json::from_str(&read(dir.join("summary.json"))).unwrap() };
    let (mut m, mut w) = (json(&merged), json(&whole));
    for j in [&mut m, &mut w] {
        for method in j["summary"]["methods"].as_array_mut().unwrap() {
            method["denoise_seconds"] = serde_json::Value::Null; // timings differ between runs
        }
    }
    assert_eq!(m["summary"], w["summary"], "statistics recomputed on the whole");
    assert_eq!(m["images"], w["images"]);
    for key in ["model_sha256", "data_sha256", "options", "denoisers"] {
        assert_eq!(m["run"][key], w["run"][key], "{key}");
    }
    assert_eq!(m["run"]["options"]["shard"], serde_json::Value::Null);
    let failed = m["methods"].as_array().unwrap().iter().find(|x| x["error"].is_object()).unwrap();
    assert_eq!(failed["failed_at"], 0);
    let images = m["timing"]["images"].as_u64().unwrap();
    assert_eq!(images, 12);
    // The summary differs only in its timings (its timing line, the last column of the methods table)
    // and the plots are drawn from the whole.
    let strip = |t: String| {
        let line = |l: &str| match l.strip_suffix(" |").and_then(|l| l.rsplit_once(" | ")) {
            Some((row, _seconds)) if l.starts_with("| ") && l.matches(" | ").count() == 12 => row.to_string(),
            _ if l.starts_with("Timing:") => String::new(),
            _ => l.to_string(),
        };
        t.lines().map(line).collect::<Vec<_>>().join("\n")
    };
    assert_eq!(strip(read(merged.join("summary.md"))), strip(read(whole.join("summary.md"))));
    for f in ["scores", "score_vs_dose", "score_vs_psnr"] {
        assert!(std::fs::read(merged.join(format!("{f}.png"))).unwrap().starts_with(b"\x89PNG"), "{f}.png");
    }

    // Incomplete, repeated or mismatched shards, and a folder that is not a shard.
    let refuse = |args: &[&str], why: &str| {
        let out = ldctq(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(why), "{args:?}: want {why:?} in {err}");
    };
    let bad = common::temp_dir("shards-bad");
    refuse(&["bench", "merge", s(&bad), s(&parts[0]), s(&parts[1])], "shard 2/3 is missing");
    refuse(
        &["bench", "merge", s(&bad), s(&parts[0]), s(&parts[0]), s(&parts[1])],
        "shard 0/3 is given twice",
    );
    refuse(&["bench", "merge", s(&bad), s(&whole)], "not a shard");
    refuse(&["bench", "merge", s(&bad), s(&bad)], "summary.json");
    let other_window = common::temp_dir("shards-window");
    ok(bench(&other_window, &["--shard", "2/3", "--window", "abdomen"]));
    refuse(&["bench", "merge", s(&bad), s(&parts[0]), s(&parts[1]), s(&other_window)], "shard 2/3 differs");
    let halves = common::temp_dir("shards-halves");
    ok(bench(&halves, &["--shard", "1/2"]));
    refuse(&["bench", "merge", s(&bad), s(&parts[0]), s(&halves)], "shards of 3 and of 2 parts");
    refuse(&["bench", "merge", s(&bad)], "SHARDS");
}

#[test]
fn score_shards_split_the_rows_of_one_run() {
    let model = common::fixture("quality/a_unit_seq");
    let images = sim_set().join("image");
    let score = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["score", "--model", s(&model), "--format", "csv", "--batch", "4"];
        args.extend(extra);
        args.push(s(&images));
        let out = ok(ldctq(&args));
        String::from_utf8(out.stdout).unwrap().lines().skip(1).map(String::from).collect()
    };
    let whole = score(&[]);
    assert_eq!(whole.len(), 12);
    let parts: Vec<Vec<String>> = (0..3).map(|i| score(&["--shard", &format!("{i}/3")])).collect();
    assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 4]);
    assert_eq!(parts.concat(), whole);
    for bad in ["3/3", "1/0", "x"] {
        let out = ldctq(&["score", "--model", s(&model), "--shard", bad, s(&images)]);
        assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("shard"), "{bad}");
    }
}
