//! bf16 and f16 weights on CPU multiply in their own dtype, or in f32 on the weights cast up at use
//! where the CPU multiplies them slowly (`ldctq::runtime::product_kind`). Both routes are checked on
//! every machine: the f32 route gives exactly what an f32 model on the rounded weights gives (scores
//! and input gradients), the native route stays within bf16's acceptance threshold of it and differs
//! from it (the switch takes effect). One test in its own binary: the choice is process-wide.
mod common;

use common::{assert_close, fixture, max_abs_diff};
use ldctq::criterion::QualityCriterion;
use ldctq::model::{QualityConfig, QualityModel, Widths};
use ldctq::runtime::{product_kind, set_reduced_products, ReducedProducts};
use ldctq::Placement;
use tch::{Device, Kind, Tensor};

const WIDTHS: Widths = Widths { film_hidden: 12, head_hidden: 10, fusion_hidden: 4 };

fn tiny_model(kind: Kind) -> QualityModel {
    let config = QualityConfig::new(&fixture("siglip/tiny_a").display().to_string(), 16);
    QualityModel::init(config, WIDTHS, 3, Placement { device: Device::Cpu, kind }).unwrap()
}

#[test]
fn reduced_precision_products_run_natively_or_in_f32() {
    tch::manual_seed(4);
    let x = Tensor::rand([3, 1, 20, 20], (Kind::Float, Device::Cpu));
    let u = Tensor::from_slice(&[0.7f32, -1.3, 0.4]);
    for kind in [Kind::BFloat16, Kind::Half] {
        let reduced = tiny_model(kind);
        // The f32 model on the same weights rounded to `kind`.
        let rounded = tiny_model(Kind::Float);
        tch::no_grad(|| {
            for (name, mut v) in rounded.vision_store().variables() {
                let r = v.to_kind(kind).to_kind(Kind::Float);
                assert!(max_abs_diff(&r, &v) > 0.0 || v.abs().max().double_value(&[]) == 0.0, "{name}");
                v.copy_(&r);
            }
        });
        let (s_want, g_want) = rounded.score_and_grad(&x, Some(&u)).unwrap();

        set_reduced_products(ReducedProducts::F32);
        assert_eq!(product_kind(kind, Device::Cpu), Kind::Float);
        let (s_f32, g_f32) = reduced.score_and_grad(&x, Some(&u)).unwrap();
        // The same f32 operations on the same values.
        assert_close(&format!("{kind:?} weights, f32 products: scores"), &s_f32, &s_want, 1e-6);
        assert_close(&format!("{kind:?} weights, f32 products: gradient"), &g_f32, &g_want, 1e-6);

        set_reduced_products(ReducedProducts::Native);
        assert_eq!(product_kind(kind, Device::Cpu), kind);
        let (s_native, g_native) = reduced.score_and_grad(&x, Some(&u)).unwrap();
        // bf16's acceptance threshold (tests/fast_paths.rs), and an effect of the activations' rounding.
        assert_close(&format!("{kind:?} products: scores"), &s_native, &s_want, 0.02);
        assert!(max_abs_diff(&g_native, &g_f32) > 0.0, "{kind:?}: native products should round activations");
    }
    // Other dtypes and devices keep their own; the automatic choice is native where the CPU has the
    // instructions, otherwise measured (printed).
    set_reduced_products(ReducedProducts::Auto);
    for kind in [Kind::Float, Kind::Double] {
        assert_eq!(product_kind(kind, Device::Cpu), kind);
    }
    assert_eq!(product_kind(Kind::BFloat16, Device::Cuda(0)), Kind::BFloat16);
    let bf16 = product_kind(Kind::BFloat16, Device::Cpu);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512bf16") {
        assert_eq!(bf16, Kind::BFloat16);
    }
    println!("this CPU: bf16 products in {bf16:?}, f16 in {:?}", product_kind(Kind::Half, Device::Cpu));
}
