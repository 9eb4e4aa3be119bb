//! Classifier-free guidance: the formula, both conventions, one batched call, w = 0.
use std::cell::Cell;

use burn::prelude::*;
use diffuse::sampling::{Denoiser, Guidance, GuidanceConvention, Guided};

/// A fake conditional model: ε = x · (label + 1), counting its calls.
struct Fake {
    calls: Cell<usize>,
}

impl Denoiser<2> for Fake {
    fn eps(&self, x: Tensor<2>, _t: usize, labels: Option<&[usize]>) -> Tensor<2> {
        self.calls.set(self.calls.get() + 1);
        let labels = labels.expect("labels");
        assert_eq!(labels.len(), x.dims()[0]);
        let scale: Vec<f32> = labels.iter().map(|&l| l as f32 + 1.0).collect();
        let n = scale.len();
        x * Tensor::<2>::from_data(TensorData::new(scale, [n, 1]), &Device::flex())
    }
}

fn x() -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(vec![1.0f32, 2.0, -1.0, 0.5], [2, 2]),
        &Device::flex(),
    )
}

#[test]
fn reference_formula_in_one_call() {
    let m = Fake {
        calls: Cell::new(0),
    };
    let g = Guided {
        model: &m,
        guidance: Guidance::new(7.5, GuidanceConvention::Reference).unwrap(),
    };
    let out: Vec<f32> = g
        .eps(x(), 10, Some(&[2, 3]))
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(
        m.calls.get(),
        1,
        "conditional and null batch must share one network call"
    );
    // ε_u = x·1, ε_c = x·(c+1): (1+w)(c+1)x − w x.
    let want = [
        (8.5 * 3.0 - 7.5) * 1.0,
        (8.5 * 3.0 - 7.5) * 2.0,
        (8.5 * 4.0 - 7.5) * -1.0,
        (8.5 * 4.0 - 7.5) * 0.5,
    ];
    for (a, b) in out.iter().zip(want) {
        assert!((a - b).abs() < 1e-5, "{out:?} vs {want:?}");
    }
}

#[test]
fn diffusers_convention_is_w_plus_one() {
    let m = Fake {
        calls: Cell::new(0),
    };
    let a = Guided {
        model: &m,
        guidance: Guidance::new(3.0, GuidanceConvention::Reference).unwrap(),
    };
    let b = Guided {
        model: &m,
        guidance: Guidance::new(4.0, GuidanceConvention::Diffusers).unwrap(),
    };
    let ea: Vec<f32> = a
        .eps(x(), 5, Some(&[1, 2]))
        .into_data()
        .try_to_vec()
        .unwrap();
    let eb: Vec<f32> = b
        .eps(x(), 5, Some(&[1, 2]))
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(ea, eb);
}

#[test]
fn zero_scale_is_the_plain_conditional_prediction() {
    let m = Fake {
        calls: Cell::new(0),
    };
    let g = Guided {
        model: &m,
        guidance: Guidance::new(0.0, GuidanceConvention::Reference).unwrap(),
    };
    let out: Vec<f32> = g
        .eps(x(), 5, Some(&[1, 2]))
        .into_data()
        .try_to_vec()
        .unwrap();
    let plain: Vec<f32> = m
        .eps(x(), 5, Some(&[1, 2]))
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(out, plain);
    assert_eq!(m.calls.get(), 2, "w = 0 needs no null-label batch");
}

#[test]
fn negative_scales_are_rejected() {
    assert!(Guidance::new(-0.5, GuidanceConvention::Reference).is_err());
    assert!(Guidance::new(0.5, GuidanceConvention::Diffusers).is_err());
    assert!(Guidance::new(f64::NAN, GuidanceConvention::Reference).is_err());
}
