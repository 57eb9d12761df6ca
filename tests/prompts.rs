//! Learned prompts: context vectors through the frozen text tower (start equal to the hand prompt,
//! gradients against finite differences), trained by the ranking loss jointly or alone, resumed,
//! saved and loaded, replaced by a text prompt, and errors on bad settings or broken folders.
mod common;

use common::{fixture, max_abs_diff, synthetic_set, temp_dir, tiny_train_config};
use ldctq::criterion::MapMethod;
use ldctq::data::Dataset;
use ldctq::model::{PromptInit, PromptMode, QualityConfig, QualityModel, Widths, CONTEXT_KEY};
use ldctq::train::{Cache, Event, LearnPrompt, TrainConfig, Trainer};
use ldctq::{Error, Placement, QualityCriterion};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

const WIDTHS: Widths = Widths { film_hidden: 12, head_hidden: 10, fusion_hidden: 4 };
/// A short hand prompt.
const SHORT: &str = "rate this ct";

/// Ids of `SHORT` up to and including its EOS (the rest is EOS padding).
fn short_len() -> i64 {
    let ids =
        ldctq::siglip::Pretrained::open(&backbone()).unwrap().tokenizer().unwrap().encode(SHORT).unwrap();
    ids.iter().position(|&id| id == 1).unwrap() as i64 + 1
}

fn backbone() -> String {
    fixture("siglip/tiny_a").display().to_string()
}

fn tiny_model(kind: Kind, seed: i64) -> QualityModel {
    let config = QualityConfig::new(&backbone(), 16);
    QualityModel::init(config, WIDTHS, seed, Placement { device: Device::Cpu, kind }).unwrap()
}

fn images(n: i64, kind: Kind, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::rand([n, 1, 16, 16], (kind, Device::Cpu))
}

#[test]
fn hand_initialised_context_starts_at_the_hand_prompt() {
    let mut model = tiny_model(Kind::Float, 1);
    model.set_prompt(SHORT).unwrap();
    let hand = model.prompt_embedding().unwrap();
    let x = images(3, Kind::Float, 2);
    let hand_scores = model.score(&x).unwrap();
    // Context vectors covering the prompt's pieces and EOS: the tower sees the same embeddings.
    let n = short_len();
    assert!(n > 3 && n < 40, "{n} ids");
    model.learn_prompt(n, PromptInit::Hand, 0).unwrap();
    assert_eq!(model.config.prompt_mode, PromptMode::Learned);
    assert_eq!(model.config.prompt, "");
    let learned = model.prompt_embedding().unwrap();
    // Same rows, same positions, same kernels: equal up to f32 rounding of a 2-layer tower.
    assert!(max_abs_diff(&learned, &hand) < 1e-6, "{}", max_abs_diff(&learned, &hand));
    assert!(max_abs_diff(&model.score(&x).unwrap(), &hand_scores) < 1e-5);
    // Fewer vectors keep only the prompt's start: another embedding.
    model.set_prompt(SHORT).unwrap();
    model.learn_prompt(n - 3, PromptInit::Hand, 0).unwrap();
    assert!(max_abs_diff(&model.prompt_embedding().unwrap(), &hand) > 1e-3);
    // Random starts are seeded, N(0, 0.02).
    model.learn_prompt(16, PromptInit::Random, 7).unwrap();
    let ctx = model.prompt_context().unwrap();
    assert_eq!(ctx.size(), [16, 32]);
    let std = ctx.std(true).double_value(&[]);
    assert!((0.015..0.025).contains(&std), "std {std}");
    let again = {
        let mut m = tiny_model(Kind::Float, 1);
        m.learn_prompt(16, PromptInit::Random, 7).unwrap();
        m.prompt_context().unwrap()
    };
    assert_eq!(max_abs_diff(&ctx, &again), 0.0);
}

#[test]
fn score_gradient_with_respect_to_the_context_matches_finite_differences() {
    let mut model = tiny_model(Kind::Double, 3);
    model.learn_prompt(4, PromptInit::Random, 11).unwrap();
    model.set_film_strength(3.0).unwrap(); // a visible dependence on the prompt
    model.set_prompt_trainable(true);
    let x = images(2, Kind::Double, 4);
    let u = Tensor::from_slice(&[1.0f64, -0.6]);
    let objective = |m: &QualityModel| (m.score_images(&x).unwrap() * &u).sum(Kind::Double);
    objective(&model).backward();
    let ctx = model.prompt_context().unwrap();
    let grad = ctx.grad();
    assert!(grad.defined(), "no gradient reached the context");
    assert!(grad.abs().max().double_value(&[]) > 0.0);
    // Central differences in f64 through the frozen text tower, FiLM and heads: rounding ~1e-10,
    // truncation ~1e-12; a wrong path shows as >= 1e-3 relative.
    let eps = 1e-6;
    for k in [0i64, 5, 33, 70, 127] {
        let bump = |d: f64| {
            tch::no_grad(|| {
                let _ = ctx.view([-1]).get(k).f_add_scalar_(d).unwrap();
            });
            let v = tch::no_grad(|| objective(&model).double_value(&[]));
            tch::no_grad(|| {
                let _ = ctx.view([-1]).get(k).f_add_scalar_(-d).unwrap();
            });
            v
        };
        let fd = (bump(eps) - bump(-eps)) / (2.0 * eps);
        let an = grad.view([-1]).double_value(&[k]);
        let err = (fd - an).abs() / fd.abs().max(1e-4);
        println!("context {k}: analytic {an:.9e}, finite difference {fd:.9e}, rel err {err:.2e}");
        assert!(err < 1e-4, "context entry {k}: analytic {an}, finite difference {fd}");
    }
}

fn config(epochs: usize, learn: Option<LearnPrompt>, from: Option<&Path>) -> TrainConfig {
    TrainConfig {
        augment: None,
        learn_prompt: learn,
        from_model: from.map(Path::to_path_buf),
        ..tiny_train_config(epochs)
    }
}

fn train(
    data: &Path,
    out: &Path,
    config: TrainConfig,
    resume: bool,
    stop_after: Option<usize>,
) -> ldctq::Result<()> {
    let mut base = QualityConfig::new(&backbone(), 16);
    base.prompt = SHORT.into();
    let cache = Cache::load(&Dataset::open(data).unwrap(), &base).unwrap();
    let t = Trainer {
        base,
        widths: WIDTHS,
        config,
        at: Placement::default(),
        out: out.to_path_buf(),
        cache: &cache,
    };
    let result = t.run(resume, &mut |e| match e {
        Event::Epoch(log) if Some(log.epoch) == stop_after => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    match (result, stop_after) {
        (Ok(_), None) => Ok(()),
        (Err(Error::Interrupted(_)), Some(_)) => Ok(()),
        (other, _) => other.map(|_| ()),
    }
}

fn tensors(path: &Path) -> Vec<(String, Tensor)> {
    let mut all = Tensor::read_safetensors(path).unwrap();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn assert_same(a: &Path, b: &Path) {
    for ((na, ta), (nb, tb)) in tensors(a).iter().zip(&tensors(b)) {
        assert_eq!(na, nb);
        assert_eq!(max_abs_diff(ta, tb), 0.0, "{na} differs between {} and {}", a.display(), b.display());
    }
}

#[test]
fn learned_prompt_trains_resumes_saves_loads_and_can_train_alone() {
    tch::set_num_threads(1);
    let data = synthetic_set(24);
    let learn = |only| Some(LearnPrompt { tokens: 6, init: PromptInit::Hand, lr: 1e-2, only });

    // Jointly with FiLM, heads and the last vision block; killed after epoch 1 and resumed.
    let straight = temp_dir("prompt-straight");
    train(&data, &straight, config(3, learn(false), None), false, None).unwrap();
    let resumed = temp_dir("prompt-resumed");
    train(&data, &resumed, config(3, learn(false), None), false, Some(1)).unwrap();
    train(&data, &resumed, config(3, learn(false), None), true, None).unwrap();
    for f in ["prompt.safetensors", "head.safetensors", "vision.safetensors"] {
        assert_same(&straight.join("folds/fold-1/last").join(f), &resumed.join("folds/fold-1/last").join(f));
    }
    // The model folder says the prompt is learned and holds the trained context.
    let cfg = QualityConfig::from_file(&straight.join("ldctq.json")).unwrap();
    assert_eq!(cfg.prompt_mode, PromptMode::Learned);
    let model = QualityModel::load(&straight, Placement::default()).unwrap();
    let ctx = model.prompt_context().unwrap();
    assert_eq!(ctx.size(), [6, 32]);
    let mut start = tiny_model(Kind::Float, 0);
    start.set_prompt(SHORT).unwrap();
    start.learn_prompt(6, PromptInit::Hand, 0).unwrap();
    let moved = max_abs_diff(&ctx, &start.prompt_context().unwrap());
    assert!(moved > 1e-4, "the context did not train ({moved})");
    // Loading is deterministic and the prompt is frozen for criterion use.
    let again = QualityModel::load(&straight, Placement::default()).unwrap();
    let x = images(3, Kind::Float, 8);
    assert_eq!(max_abs_diff(&model.score(&x).unwrap(), &again.score(&x).unwrap()), 0.0);
    assert!(!ctx.requires_grad());

    // Prompt-only from the trained model: FiLM, heads and vision unchanged, the context moves.
    let alone = temp_dir("prompt-only");
    train(&data, &alone, config(2, learn(true), Some(&straight)), false, None).unwrap();
    assert_same(&straight.join("head.safetensors"), &alone.join("head.safetensors"));
    // The fine-tuned tower it started from is kept, unchanged.
    assert_same(&straight.join("vision.safetensors"), &alone.join("vision.safetensors"));
    let tuned = QualityModel::load(&alone, Placement::default()).unwrap();
    let start_ctx = QualityModel::load(&straight, Placement::default()).unwrap();
    assert!(max_abs_diff(&tuned.prompt_context().unwrap(), &start_ctx.prompt_context().unwrap()) > 1e-4);

    // Prompt-only tunes the learned context it starts from: with a negligible learning rate it stays
    // where the joint training left it (not restarted from the hand prompt).
    let still = temp_dir("prompt-still");
    let tiny_lr = Some(LearnPrompt { tokens: 6, init: PromptInit::Hand, lr: 1e-9, only: true });
    train(&data, &still, config(1, tiny_lr, Some(&straight)), false, None).unwrap();
    let kept = QualityModel::load(&still, Placement::default()).unwrap().prompt_context().unwrap();
    assert!(max_abs_diff(&kept, &start_ctx.prompt_context().unwrap()) < 1e-6);

    // Prompt-only without a model to start from is an error naming it.
    let err = train(&data, &temp_dir("prompt-bad"), config(1, learn(true), None), false, None).unwrap_err();
    assert!(err.to_string().contains("from_model"), "{err}");
}

#[test]
fn a_text_prompt_replaces_a_learned_one() {
    let dir = temp_dir("prompt-replace");
    let mut model = tiny_model(Kind::Float, 2);
    model.learn_prompt(5, PromptInit::Random, 3).unwrap();
    model.save(&dir, false).unwrap();
    let mut loaded = QualityModel::load(&dir, Placement::default()).unwrap();
    let learned = loaded.prompt_embedding().unwrap();
    loaded.set_prompt(SHORT).unwrap();
    assert_eq!(loaded.config.prompt_mode, PromptMode::Text);
    assert!(loaded.prompt_context().is_none());
    let mut text = tiny_model(Kind::Float, 2);
    text.set_prompt(SHORT).unwrap();
    assert_eq!(max_abs_diff(&loaded.prompt_embedding().unwrap(), &text.prompt_embedding().unwrap()), 0.0);
    assert!(max_abs_diff(&loaded.prompt_embedding().unwrap(), &learned) > 1e-3);
    // The empty text after the context is not confused with the cached learned z_t.
    loaded.set_prompt("").unwrap();
    let mut empty = tiny_model(Kind::Float, 2);
    empty.set_prompt("").unwrap();
    assert_eq!(max_abs_diff(&loaded.prompt_embedding().unwrap(), &empty.prompt_embedding().unwrap()), 0.0);
}

#[test]
fn bad_prompt_settings_and_broken_prompt_files_are_errors() {
    let mut model = tiny_model(Kind::Float, 1);
    for n in [0, 64, 100] {
        let err = model.learn_prompt(n, PromptInit::Hand, 0).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)) && err.to_string().contains("1 to 63"), "{n}: {err}");
    }
    model.learn_prompt(3, PromptInit::Random, 0).unwrap();
    let dir = temp_dir("prompt-broken");
    model.save(&dir, false).unwrap();
    // Missing file.
    std::fs::rename(dir.join("prompt.safetensors"), dir.join("moved.safetensors")).unwrap();
    let err = QualityModel::load(&dir, Placement::default()).unwrap_err();
    assert!(err.to_string().contains("prompt.safetensors") && err.to_string().contains("learned"), "{err}");
    // Wrong width and wrong name.
    for (name, shape) in [(CONTEXT_KEY, [3i64, 31]), ("prompt.ctx", [3, 32])] {
        Tensor::write_safetensors(
            &[(name, Tensor::zeros(shape, tch::kind::FLOAT_CPU))],
            dir.join("prompt.safetensors"),
        )
        .unwrap();
        let err = QualityModel::load(&dir, Placement::default()).unwrap_err();
        assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
        println!("{err}");
    }
}

#[test]
fn anatomy_prompts_condition_each_image_on_its_anatomy() {
    let mut config = QualityConfig::new(&backbone(), 16);
    config.anatomies = vec!["abdomen".into(), "head".into()];
    let at = Placement { device: Device::Cpu, kind: Kind::Double };
    let mut model = QualityModel::init(config, WIDTHS, 4, at).unwrap();
    model.set_film_strength(3.0).unwrap();
    assert_eq!(model.config.prompt_text(Some("head")), format!("head {}", ldctq::model::DEFAULT_PROMPT));
    let x = images(4, Kind::Double, 6);
    let px = model.config.preprocess().pixel_values(&x).unwrap();
    let each: Vec<Option<String>> =
        [Some("head"), None, Some("abdomen"), Some("head")].iter().map(|a| a.map(String::from)).collect();
    let mixed = model.forward_anatomies(&px, &each, None).unwrap();
    // Each image scores as the model set to its anatomy scores it (the same f64 operations per element).
    let mut by_setting = Vec::new();
    for a in [None, Some("abdomen"), Some("head")] {
        model.set_anatomy(a).unwrap();
        by_setting.push((a, model.forward_t(&px, None).unwrap()));
    }
    for (i, a) in each.iter().enumerate() {
        let (_, want) = by_setting.iter().find(|(s, _)| *s == a.as_deref()).unwrap();
        let (got, want) = (mixed.double_value(&[i as i64]), want.double_value(&[i as i64]));
        assert!((got - want).abs() < 1e-12, "image {i} ({a:?}): {got} vs {want}");
    }
    // The anatomy word changes the conditioning.
    assert!(max_abs_diff(&by_setting[0].1, &by_setting[2].1) > 1e-6);
    // So do its quality maps, every method (the criterion's per-image maps; f64).
    model.set_anatomy(None).unwrap();
    for method in MapMethod::ALL {
        let mixed = model.quality_map_anatomies(&x, method, &each).unwrap();
        for a in [None, Some("abdomen"), Some("head")] {
            model.set_anatomy(a).unwrap();
            let want = model.quality_map(&x, method).unwrap();
            for (i, _) in each.iter().enumerate().filter(|(_, e)| e.as_deref() == a) {
                let diff = max_abs_diff(&mixed.get(i as i64), &want.get(i as i64));
                assert!(diff < 1e-10, "{} map of image {i} ({a:?}) differs by {diff}", method.name());
            }
            if a.is_none() {
                // Image 0 is a head image: its map is not the unconditioned one.
                assert!(max_abs_diff(&mixed.get(0), &want.get(0)) > 1e-8, "{}", method.name());
            }
        }
        model.set_anatomy(None).unwrap();
        let err = model.quality_map_anatomies(&x, method, &each[..3]).unwrap_err();
        assert!(err.to_string().contains("3 anatomies for 4 images"), "{}: {err}", method.name());
    }
    model.set_anatomy(Some("head")).unwrap();
    // Unknown words and miscounts are errors naming the problem.
    let err = model.set_anatomy(Some("chest")).unwrap_err();
    assert!(err.to_string().contains("abdomen, head"), "{err}");
    assert_eq!(model.anatomy(), Some("head"), "a failed set keeps the anatomy");
    let err = model.forward_anatomies(&px, &each[..3], None).unwrap_err();
    assert!(err.to_string().contains("3 anatomies for 4 images"), "{err}");
    let bad = vec![Some("chest".to_string()); 4];
    assert!(model.forward_anatomies(&px, &bad, None).is_err());
    // Words are checked in ldctq.json, and a model without anatomies writes none.
    model.config.anatomies = vec!["Head".into()];
    assert!(model.config.validate().unwrap_err().contains("lower-case"));
    let plain = tiny_model(Kind::Float, 1);
    let dir = temp_dir("anatomy-json");
    plain.save(&dir, false).unwrap();
    assert!(!std::fs::read_to_string(dir.join("ldctq.json")).unwrap().contains("anatomies"));
    let err = QualityModel::load(&dir, Placement::default()).unwrap().set_anatomy(Some("head")).unwrap_err();
    assert!(err.to_string().contains("no anatomy prompts"), "{err}");
}

/// A manifest (in a folder of its own) over the synthetic set with an anatomy column (every third
/// image without one).
fn with_anatomy(set: &Path) -> PathBuf {
    let labels: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(set.join("train.json")).unwrap()).unwrap();
    let mut csv = String::from("path,score,anatomy\n");
    for (i, (name, label)) in labels.iter().enumerate() {
        let anatomy = ["Abdomen", "head", ""][i % 3];
        csv += &format!("{},{label},{anatomy}\n", set.join("image").join(name).display());
    }
    let path = temp_dir("anatomy-manifest").join("manifest.csv");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, csv).unwrap();
    path
}

#[test]
fn anatomy_prompts_train_from_a_manifest_column() {
    tch::set_num_threads(1);
    let set = synthetic_set(24);
    let manifest = with_anatomy(&set);
    let data = Dataset::open(&manifest).unwrap();
    let each: Vec<Option<&str>> = data.samples.iter().take(3).map(|s| s.anatomy.as_deref()).collect();
    assert_eq!(each, [Some("abdomen"), Some("head"), None], "lower-cased; an empty cell is none");
    let out = temp_dir("anatomy-train");
    let learn = Some(LearnPrompt { tokens: 4, init: PromptInit::Random, lr: 1e-2, only: false });
    let config = TrainConfig { anatomy_prompts: true, ..config(2, learn.clone(), None) };
    train(&manifest, &out, config.clone(), false, None).unwrap();
    let cfg = QualityConfig::from_file(&out.join("ldctq.json")).unwrap();
    assert_eq!(cfg.anatomies, ["abdomen", "head"]);
    assert_eq!((cfg.prompt_mode, cfg.prompt.as_str()), (PromptMode::Learned, ""));
    let mut model = QualityModel::load(&out, Placement::default()).unwrap();
    let x = images(2, Kind::Float, 1);
    let none = model.score(&x).unwrap();
    model.set_anatomy(Some("head")).unwrap();
    assert!(max_abs_diff(&model.score(&x).unwrap(), &none) > 0.0);
    // A set without anatomies cannot train anatomy prompts.
    let err = train(&set, &temp_dir("anatomy-none"), config, false, None).unwrap_err();
    assert!(err.to_string().contains("anatomy"), "{err}");
}

/// `ldctq train --learn-prompt` end to end, then prompt-only from it with `--init-from`; the flags
/// that need each other are refused.
#[test]
fn cli_trains_a_learned_prompt_and_tunes_it_alone() {
    let data = synthetic_set(16);
    let dir = temp_dir("prompt-cli");
    let ldctq = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ldctq"))
            .args(args)
            .env("OMP_NUM_THREADS", "1")
            .output()
            .expect("ldctq runs");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (d, b) = (data.to_str().unwrap(), backbone());
    let (first, second) = (dir.join("first"), dir.join("second"));
    let small = ["--epochs", "2", "--folds", "2", "--fold", "0", "--batch", "4", "--accumulation", "1"];
    let widths = ["--film-hidden", "8", "--head-hidden", "8", "--fusion-hidden", "4", "--vision", "frozen"];
    let mut args = vec!["train", "--data", d, "--backbone", &b, "--out", first.to_str().unwrap()];
    args.extend(small.iter().chain(&widths));
    args.extend(["--image-size", "16", "--learn-prompt", "4", "--prompt-init", "random"]);
    let (ok, err) = ldctq(&args);
    assert!(ok, "{err}");
    let cfg = QualityConfig::from_file(&first.join("ldctq.json")).unwrap();
    assert_eq!(cfg.prompt_mode, PromptMode::Learned);
    assert_eq!(tensors(&first.join("prompt.safetensors"))[0].1.size(), [4, 32]);
    let (ok, err) = ldctq(&["score", "--model", first.to_str().unwrap(), &format!("{d}/image")]);
    assert!(ok, "{err}");
    // `ldctq eval` reports the metrics by anatomy of a manifest's anatomy column.
    let manifest = with_anatomy(&data);
    let eval = std::process::Command::new(env!("CARGO_BIN_EXE_ldctq"))
        .args(["eval", "--model", first.to_str().unwrap(), "--data", manifest.to_str().unwrap()])
        .args(["--format", "json"])
        .output()
        .expect("ldctq runs");
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let json: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    let groups: Vec<(String, u64)> = json["by_anatomy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["anatomy"].as_str().unwrap().to_string(), g["n"].as_u64().unwrap()))
        .collect();
    let names: Vec<&str> = groups.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(names, ["abdomen", "head", "unknown"], "{json}");
    assert_eq!(groups.iter().map(|g| g.1).sum::<u64>(), json["metrics"]["n"].as_u64().unwrap());

    let mut args = vec!["train", "--data", d, "--init-from", first.to_str().unwrap()];
    args.extend(["--out", second.to_str().unwrap(), "--learn-prompt", "4", "--prompt-only"]);
    args.extend(small);
    let (ok, err) = ldctq(&args);
    assert!(ok, "{err}");
    assert_same(&first.join("head.safetensors"), &second.join("head.safetensors"));
    let moved = max_abs_diff(
        &tensors(&first.join("prompt.safetensors"))[0].1,
        &tensors(&second.join("prompt.safetensors"))[0].1,
    );
    assert!(moved > 0.0, "prompt-only training left the context unchanged");

    for (extra, needs) in [
        (vec!["--backbone", b.as_str(), "--prompt-only", "--learn-prompt"], "--init-from"),
        (vec!["--backbone", b.as_str(), "--prompt-init", "random"], "--learn-prompt"),
        (vec!["--init-from", first.to_str().unwrap(), "--backbone", b.as_str()], "--backbone"),
    ] {
        let mut args = vec!["train", "--data", d, "--out", "unused"];
        args.extend(extra);
        let (ok, err) = ldctq(&args);
        assert!(!ok && err.contains(needs), "{args:?}: {err}");
    }
}
