//! Isolated plugins: failing and crashing denoisers are reported and the others go on, under both hosts
//! (this process, and a worker process per denoiser: `ldctq denoiser-worker`), with the same scores and
//! errors; the worker protocol.
mod common;

use common::bench::*;
use ldctq::bench::{self, BenchOptions};
use ldctq::data::Dataset;
use ldctq::denoise::{self, DenoiseError, DenoiserInfo, ErrorKind, PluginHost};
use std::path::PathBuf;
use std::process::Command;
use tch::Device;

#[test]
fn failing_plugins_are_reported_and_the_others_go_on() {
    let [in_process, isolated] = hosts().map(|host| failing_plugins_run(&host));
    // The worker runs the same plugin code on the same values: the same scores and errors, bit for bit.
    for (a, b) in in_process.methods.iter().zip(&isolated.methods) {
        assert_eq!((&a.name, &a.scores, &a.error), (&b.name, &b.scores, &b.error));
    }
}

fn failing_plugins_run(host: &PluginHost) -> bench::BenchRun {
    let data = Dataset::open(&sim_set()).unwrap();
    let specs = vec![
        spec(&plugin("gaussian"), None),
        spec(&plugin("bad/wrong_abi"), None),
        spec(&plugin("fail"), None),
        spec(&plugin("fail"), Some(r#"{"after":1}"#)),
        spec(&plugin("bad/nan_output"), None),
        spec(&plugin("bad/nan_output"), Some(r#"{"inf":1}"#)),
        spec(&plugin("bad/wrong_size"), Some(r#"{"mode":"short"}"#)),
        spec(&plugin("bad/wrong_size"), Some(r#"{"mode":"long"}"#)),
        spec(&plugin("bad/missing_symbol"), None),
        spec(&plugin("median"), None),
        "identity".into(),
    ];
    let candidates = denoise::load_all(&specs, Device::Cpu, host);
    let names: Vec<String> = candidates.iter().map(|c| c.name.clone()).collect();
    assert_eq!(
        names,
        [
            "gaussian",
            "bad_wrong_abi", // a plugin that fails to load is named after its file
            "fail",
            "fail#2",
            "nan_output",
            "nan_output#2",
            "wrong_size",
            "wrong_size#2",
            "bad_missing_symbol",
            "median",
            "identity"
        ]
    );
    let o = BenchOptions { batch: 4, limit: Some(8), ..opts() };
    let run = bench::run(&fixture_model(), &data, candidates, &o, Device::Cpu, &mut |_| {}).unwrap();
    let by = |name: &str| run.methods.iter().find(|m| m.name == name).unwrap();
    for ok in ["input", "reference", "gaussian", "median", "identity"] {
        let m = by(ok);
        assert!(m.ok(), "{ok}: {:?}", m.error);
        assert!(m.scores.iter().all(|s| s.is_some()), "{ok} has every score");
    }
    let expect = [
        ("bad_wrong_abi", ErrorKind::Abi, "wrong_abi", 0),
        ("fail", ErrorKind::Denoise, "simulated failure on call 1", 0),
        ("fail#2", ErrorKind::Denoise, "simulated failure on call 2", 4),
        ("nan_output", ErrorKind::NonFinite, "NaN", 0),
        ("nan_output#2", ErrorKind::NonFinite, "inf", 0),
        ("wrong_size", ErrorKind::WrongSize, "unwritten", 0),
        ("wrong_size#2", ErrorKind::WrongSize, "past the end", 0),
        ("bad_missing_symbol", ErrorKind::MissingSymbol, "missing_symbol", 0),
    ];
    for (name, kind, needle, at) in expect {
        let m = by(name);
        let e = m.error.as_ref().unwrap_or_else(|| panic!("{name} should have failed"));
        println!("{name}: {e}");
        assert_eq!(e.kind, kind, "{name}: {e}");
        assert!(e.denoiser.contains("plugin ") && e.denoiser.contains(".so"), "{name}: {e} names no plugin");
        assert!(
            e.to_string().to_lowercase().contains(&needle.to_lowercase()),
            "{name}: {e} lacks {needle:?}"
        );
        assert_eq!(m.failed_at, Some(at), "{name}");
    }
    // "fail#2" denoised the first batch before failing: its scores stop there.
    assert!(by("fail#2").scores[..4].iter().all(|s| s.is_some()));
    assert!(by("fail#2").scores[4..].iter().all(|s| s.is_none()));
    let summary = bench::summarize(&run, &o);
    let failed: Vec<&str> =
        summary.methods.iter().filter(|m| m.status == "failed").map(|m| m.name.as_str()).collect();
    assert_eq!(failed.len(), 8);
    assert!(summary.methods.iter().filter(|m| m.status == "failed").all(|m| m.score.is_none()));
    run
}

#[test]
fn crashing_plugins_are_errors_in_a_worker_and_the_others_go_on() {
    let [in_process, isolated] = hosts();
    let crash = |json: &str| spec(&plugin("bad/crash"), Some(json));
    let specs = vec![
        crash(r#"{"how":"segv","after":1}"#),
        crash(r#"{"how":"abort"}"#),
        crash(r#"{"how":"exit"}"#),
        crash(r#"{"how":"segv","in":"create"}"#),
        crash(r#"{"how":"none"}"#), // prints to stdout on every call: the replies must not suffer
        spec(&plugin("gaussian"), None),
        "identity".into(),
    ];
    let candidates = denoise::load_all(&specs, Device::Cpu, &isolated);
    let names: Vec<String> = candidates.iter().map(|c| c.name.clone()).collect();
    let e = candidates[3].denoiser.as_ref().err().expect("a crash in create is a load error");
    assert_eq!(e.kind, ErrorKind::Crashed, "{e}");
    assert!(e.message.contains("SIGSEGV") && e.message.contains("while loading"), "{e}");
    let data = Dataset::open(&sim_set()).unwrap();
    let o = BenchOptions { batch: 4, limit: Some(8), ..opts() };
    let run = bench::run(&fixture_model(), &data, candidates, &o, Device::Cpu, &mut |_| {}).unwrap();
    let by = |name: &str| run.methods.iter().find(|m| m.name == name).unwrap();
    for (i, needle, at) in [
        (0, "died of signal 11 (SIGSEGV) while denoising a batch of 4 x 96 x 96", 4),
        (1, "(SIGABRT)", 0),
        (2, "exited with status 3", 0),
        (3, "SIGSEGV", 0),
    ] {
        let m = by(&names[i]);
        let e = m.error.as_ref().unwrap_or_else(|| panic!("{} should have failed", names[i]));
        println!("{}: {e}", names[i]);
        assert_eq!(e.kind, ErrorKind::Crashed, "{e}");
        assert!(e.to_string().contains(needle) && e.to_string().contains("libbad_crash.so"), "{e}");
        assert_eq!(m.failed_at, Some(at), "{}", names[i]);
    }
    assert_eq!(by(&names[4]).scores, by("input").scores, "a copying plugin that prints scores as the input");
    // The survivors score as they do in this process.
    let reference = run_specs(&specs[5..6], &in_process, &o);
    assert_eq!(
        by("gaussian").scores,
        reference.methods.iter().find(|m| m.name == "gaussian").unwrap().scores
    );
    assert!(by("identity").ok());

    // A plugin that hangs, in create or in a batch, is killed after the timeout.
    let worker = PathBuf::from(env!("CARGO_BIN_EXE_ldctq"));
    let timed = PluginHost::Isolated { worker, timeout: Some(std::time::Duration::from_secs(4)) };
    let hangs = [crash(r#"{"how":"hang","after":1}"#), crash(r#"{"how":"hang","in":"create"}"#), crash("{}")];
    let hangs = [&hangs[..2], &[crash(r#"{"how":"none"}"#)]].concat();
    let run = run_specs(&hangs, &timed, &o);
    let failed: Vec<_> =
        run.methods.iter().filter_map(|m| Some((m.name.as_str(), m.error.as_ref()?))).collect();
    println!("{failed:?}");
    assert_eq!(failed.len(), 2);
    for (_, e) in &failed {
        assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
        assert!(e.message.contains("within the timeout of 4 s"), "{e}");
    }
    assert_eq!(run.methods.iter().find(|m| m.name == "crash").unwrap().failed_at, Some(4));
    assert!(run.methods.iter().find(|m| m.name == "crash#2").unwrap().ok());

    // `ldctq bench` isolates plugins by default: a segfault is a reported failure (an error exit only
    // with --strict); with --in-process-plugins it takes the process down.
    let cli = |extra: &[&str]| {
        let out = common::temp_dir("bench-crash");
        Command::new(env!("CARGO_BIN_EXE_ldctq"))
            .args(["bench", "--model"])
            .arg(common::fixture("quality/a_unit_seq"))
            .arg("--data")
            .arg(sim_set())
            .arg("--denoiser")
            .arg(&specs[0])
            .args(["--denoiser", "identity", "--limit", "8", "--batch", "4", "--bootstrap", "50", "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = cli(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("FAILED") && stdout.contains("SIGSEGV"), "{stdout}");
    assert!(!stdout.contains("crash plugin:"), "the plugin's prints go to stderr: {stdout}");
    assert!(!cli(&["--strict"]).status.success());
    let bad = cli(&["--plugin-timeout", "0"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--plugin-timeout 0"), "{bad:?}");
    let out = cli(&["--in-process-plugins"]);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(11), "in process, the segfault is ldctq's: {:?}", out.status);
}

/// The worker's protocol without a process: a request answered like the in-process call, a failing call
/// answered with its error, EOF a clean end, an absurd request size an I/O error.
#[test]
fn denoiser_worker_protocol() {
    use denoise::isolated::serve;
    let request = |dims: [u64; 3], values: &[f32]| {
        let mut bytes: Vec<u8> = dims.iter().flat_map(|d| d.to_le_bytes()).collect();
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        bytes
    };
    let x: Vec<f32> = (0..2 * 5 * 7).map(|i| (i as f32 * 0.37).sin() * 0.5 + 0.5).collect();
    let path = plugin("gaussian");
    let mut input = request([2, 5, 7], &x);
    input.extend(request([1, 2, 2], &[0.5, f32::NAN, 0.5, 0.5]));
    let mut output = Vec::new();
    serve(&spec(&path, Some(r#"{"sigma":1.3}"#)), Device::Cpu, &mut input.as_slice(), &mut output).unwrap();
    // Hello: tag 0, u32 length, the info as JSON.
    assert_eq!(output[0], 0);
    let len = u32::from_le_bytes(output[1..5].try_into().unwrap()) as usize;
    let info: DenoiserInfo = serde_json::from_slice(&output[5..5 + len]).unwrap();
    assert_eq!((info.name.as_str(), info.config.as_deref()), ("gaussian", Some(r#"{"sigma":1.3}"#)));
    // First reply: tag 0 and the values of the in-process call, bit for bit.
    let rest = &output[5 + len..];
    assert_eq!(rest[0], 0);
    let got: Vec<f32> =
        rest[1..1 + 4 * x.len()].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let mut direct = denoise::PluginDenoiser::load(&path, Some(r#"{"sigma":1.3}"#)).unwrap();
    assert_eq!(got, direct.denoise_raw(&x, [2, 5, 7]).unwrap());
    // The gaussian plugin passes NaN through: the worker's checks (those of the in-process host) make
    // the second reply an error; the stream then ends cleanly at EOF.
    let second = &rest[1 + 4 * x.len()..];
    let len = u32::from_le_bytes(second[1..5].try_into().unwrap()) as usize;
    let e: DenoiseError = serde_json::from_slice(&second[5..5 + len]).unwrap();
    assert_eq!((second[0], e.kind, second.len()), (1, ErrorKind::NonFinite, 5 + len));
    // A request of 2^40 x 2^40 values is refused before any allocation.
    let mut out = Vec::new();
    let huge = request([1 << 40, 1 << 40, 1], &[]);
    let e = serve(&spec(&path, None), Device::Cpu, &mut huge.as_slice(), &mut out).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    // A plugin that fails to load: the hello is its error.
    let mut out = Vec::new();
    serve(&spec(&plugin("bad/wrong_abi"), None), Device::Cpu, &mut [].as_slice(), &mut out).unwrap();
    let len = u32::from_le_bytes(out[1..5].try_into().unwrap()) as usize;
    let e: DenoiseError = serde_json::from_slice(&out[5..5 + len]).unwrap();
    assert_eq!((out[0], e.kind), (1, ErrorKind::Abi));
}
