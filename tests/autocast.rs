//! Mixed precision (`--precision bf16`) follows PyTorch's autocast: GroupNorm (+SiLU), the
//! attention softmax and the loss run in f32 around the network's bf16 convolutions and matrix
//! products. Each test compares the autocast path with an f64 host reference computed from the
//! same bf16 inputs, and shows that the old all-bf16 path (every op in bf16) misses it.
mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::{DType, FloatDType};
use common::to_vec;
use diffuse::device::Precision;
use diffuse::image::train::predict_eps;
use diffuse::nn::unet::{attention_softmax, labels_tensor, norm_act, UNetConfig};
use diffuse::rng;
use diffuse::schedule::eps_mse;
use diffuse::train::autocast;
use diffuse_kernels::group_norm::group_norm_act;

/// bf16 keeps 8 significant bits: one rounding is a relative error ≤ 2⁻⁹ ≈ 2e-3. The autocast
/// paths below end in one such rounding (the cast back to bf16), so 1e-2 of the output's scale
/// leaves a factor 5; the all-bf16 defects they fix are 5e-2 and more.
const BF16_OUT: f64 = 1e-2;
/// What the old all-bf16 path must miss the reference by, for the test to show the difference.
const BF16_BAD: f64 = 5e-2;

fn tensor<const D: usize>(v: Vec<f32>, shape: [usize; D], dev: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), dev)
}

/// `v` rounded to the nearest bf16 (through the backend's own cast), as f32.
fn round_bf16(v: Vec<f32>) -> Vec<f32> {
    let n = v.len();
    to_vec(
        tensor(v, [n], &Device::flex())
            .cast(FloatDType::BF16)
            .cast(FloatDType::F32),
    )
}

/// Values of any float tensor as f32 (bf16 converts exactly).
fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    to_vec(t.cast(FloatDType::F32))
}

/// max |got − want| / max |want|.
fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    let d = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
    d / scale
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Channels whose mean (184…216) is ~200× their spread (σ = 1): in bf16 the group mean is
/// rounded to a step of 1, an error of up to half of σ on every centred value (Wu & He 2018
/// eq. 1). (The spread has to be at least bf16's step at the mean, or the bf16 input itself,
/// which both policies share, would no longer carry it.) Under autocast the statistics are f32, and the output matches the f64
/// GroupNorm→SiLU of the same bf16 input within the final bf16 rounding; γ stays f32 and
/// receives an f32 gradient.
#[test]
fn group_norm_statistics_run_in_f32() {
    let dev = Device::flex().autodiff();
    let (b, c, h, w, groups) = (2, 32, 8, 8, 8);
    let hw = h * w;
    let cg = c / groups;
    let mut r = rng::seeded(11, 0);
    let z = rng::normal_vec(&mut r, b * c * hw);
    let offsets: Vec<f32> = rng::normal_vec(&mut r, b * groups)
        .iter()
        .map(|u| 200.0 + 8.0 * u.clamp(-2.0, 2.0))
        .collect();
    let xv = round_bf16(
        z.iter()
            .enumerate()
            .map(|(i, z)| offsets[i / (cg * hw)] + z)
            .collect(),
    );
    let gamma: Vec<f32> = rng::normal_vec(&mut r, c)
        .iter()
        .map(|v| 1.0 + 0.2 * v)
        .collect();
    let beta: Vec<f32> = rng::normal_vec(&mut r, c).iter().map(|v| 0.2 * v).collect();
    let mut norm: GroupNorm = GroupNormConfig::new(groups, c).init(&dev);
    norm.gamma = Some(Param::from_tensor(tensor(gamma.clone(), [c], &dev)));
    norm.beta = Some(Param::from_tensor(tensor(beta.clone(), [c], &dev)));
    let eps = norm.epsilon;
    // An upstream gradient that bf16 represents exactly (the cast back to bf16 in the backward
    // would round it otherwise).
    let rv = round_bf16(rng::normal_vec(&mut r, b * c * hw));

    // f64 reference: GroupNorm→SiLU of the bf16 input, and dγ_c = Σ r·SiLU'(z)·x̂.
    let mut want = vec![0f64; b * c * hw];
    let mut want_dgamma = vec![0f64; c];
    for bi in 0..b {
        for g in 0..groups {
            let base = (bi * c + g * cg) * hw;
            let block = &xv[base..base + cg * hw];
            let n = block.len() as f64;
            let mean = block.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = block
                .iter()
                .map(|&v| (v as f64 - mean).powi(2))
                .sum::<f64>()
                / n;
            let inv = 1.0 / (var + eps).sqrt();
            for (j, &v) in block.iter().enumerate() {
                let ch = g * cg + j / hw;
                let xh = (v as f64 - mean) * inv;
                let zz = gamma[ch] as f64 * xh + beta[ch] as f64;
                let s = sigmoid(zz);
                want[base + j] = zz * s;
                want_dgamma[ch] += rv[base + j] as f64 * s * (1.0 + zz * (1.0 - s)) * xh;
            }
        }
    }

    // Autocast: γ, β stay the f32 masters; the statistics run in f32.
    let half = autocast(norm.clone(), FloatDType::BF16);
    assert_eq!(half.gamma.as_ref().unwrap().val().dtype(), DType::F32);
    let x = tensor(xv.clone(), [b, c, h, w], &dev).cast(FloatDType::BF16);
    let y = norm_act(&half, x.clone(), true);
    assert_eq!(y.dtype(), DType::BF16, "the result goes back to bf16");
    let grads = (y.clone().cast(FloatDType::F32) * tensor(rv.clone(), [b, c, h, w], &dev))
        .sum()
        .backward();
    let got = values(y);
    let err = rel_err(&got, &want);
    eprintln!("GroupNorm→SiLU, autocast: max error {err:.2e} of the output scale");
    assert!(err <= BF16_OUT, "autocast GroupNorm off by {err:e}");
    let g = GradientsParams::from_grads(grads, &norm);
    let dgamma = g
        .get::<1>(norm.gamma.as_ref().unwrap().id)
        .expect("γ's gradient");
    assert_eq!(dgamma.dtype(), DType::F32);
    // dγ sums 128 products per channel in f64 inside the kernel; the inputs are the same bf16
    // values as the reference's, so only f32 rounding of x̂, z and the sum remains.
    let dgamma = to_vec(dgamma);
    let dg_err = rel_err(&dgamma, &want_dgamma);
    eprintln!("dγ, autocast: max error {dg_err:.2e}");
    assert!(dg_err <= 1e-4, "dγ off by {dg_err:e}");

    // The old path: the whole GroupNorm (γ, β included) in bf16.
    let all_bf16 = norm.clone().map(&mut CastAll(FloatDType::BF16));
    let old = values(group_norm_act(&all_bf16, x, true));
    let old_err = rel_err(&old, &want);
    eprintln!("GroupNorm→SiLU, all bf16: max error {old_err:.2e} of the output scale");
    assert!(
        old_err >= BF16_BAD,
        "the all-bf16 GroupNorm was expected to miss by ≥ {BF16_BAD} (got {old_err:e})"
    );
}

/// Casts every float parameter (the old policy, no exceptions for norms).
struct CastAll(FloatDType);
impl burn::module::ModuleMapper for CastAll {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| t.cast(self.0))
    }
}

/// Attention logits with a large common offset (≈ 1000 before the 1/√C scale, C = 96 so the
/// scale is not a power of two): burn's composed attention scales them in bf16, rounding each
/// scaled logit (≈ 102) to a step of 0.5, i.e. up to ~25 % error in its probability, and its
/// bf16 softmax backward cancels dy − Σ dy·y when the upstream gradient has a large common
/// part (as dP = dO·Vᵀ does when V has a large mean). Under autocast the scale, the softmax
/// and its backward run in f32 and both match the f64 reference within bf16 output rounding.
#[test]
fn attention_softmax_runs_in_f32() {
    let dev = Device::flex().autodiff();
    let (b, n, c) = (2, 16, 96);
    let scale = 1.0 / (c as f64).sqrt();
    let mut r = rng::seeded(12, 0);
    let lv = round_bf16(
        rng::normal_vec(&mut r, b * n * n)
            .iter()
            .map(|v| 1000.0 + 8.0 * v)
            .collect(),
    );
    let dyv = round_bf16(
        rng::normal_vec(&mut r, b * n * n)
            .iter()
            .map(|v| 50.0 + v)
            .collect(),
    );

    // f64 reference from the same bf16 logits: p = softmax(s·l), dl = s·p⊙(dy − Σ dy·p).
    let mut want = vec![0f64; b * n * n];
    let mut want_dl = vec![0f64; b * n * n];
    for row in 0..b * n {
        let sl: Vec<f64> = lv[row * n..(row + 1) * n]
            .iter()
            .map(|&v| v as f64 * scale)
            .collect();
        let m = sl.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = sl.iter().map(|v| (v - m).exp()).collect();
        let sum: f64 = e.iter().sum();
        let p: Vec<f64> = e.iter().map(|v| v / sum).collect();
        let dy = &dyv[row * n..(row + 1) * n];
        let dot: f64 = p.iter().zip(dy).map(|(p, d)| p * *d as f64).sum();
        for j in 0..n {
            want[row * n + j] = p[j];
            want_dl[row * n + j] = scale * p[j] * (dy[j] as f64 - dot);
        }
    }

    let run = |autocast_path: bool| {
        let l = tensor(lv.clone(), [b, n, n], &dev)
            .cast(FloatDType::BF16)
            .require_grad();
        let p = if autocast_path {
            attention_softmax(l.clone(), scale)
        } else {
            // burn's attention fallback: scale, then softmax, each in the logits' dtype.
            softmax(l.clone() * scale, 2)
        };
        assert_eq!(p.dtype(), DType::BF16);
        let grads = (p.clone().cast(FloatDType::F32) * tensor(dyv.clone(), [b, n, n], &dev))
            .sum()
            .backward();
        let dl = l.grad(&grads).expect("the logits' gradient");
        (values(p), values(dl))
    };

    let (p, dl) = run(true);
    let (p_err, dl_err) = (rel_err(&p, &want), rel_err(&dl, &want_dl));
    eprintln!("softmax, autocast: probabilities {p_err:.2e}, logit gradient {dl_err:.2e}");
    assert!(p_err <= BF16_OUT, "autocast softmax off by {p_err:e}");
    assert!(
        dl_err <= BF16_OUT,
        "autocast softmax gradient off by {dl_err:e}"
    );

    let (p, dl) = run(false);
    let (p_err, dl_err) = (rel_err(&p, &want), rel_err(&dl, &want_dl));
    eprintln!("softmax, all bf16: probabilities {p_err:.2e}, logit gradient {dl_err:.2e}");
    assert!(
        p_err >= BF16_BAD,
        "the all-bf16 softmax was expected to miss by ≥ {BF16_BAD} (got {p_err:e})"
    );
    assert!(
        dl_err >= BF16_BAD,
        "the all-bf16 softmax gradient was expected to miss by ≥ {BF16_BAD} (got {dl_err:e})"
    );
}

/// Every float parameter's gradient, in visiting order: (dtype, values).
fn param_grads<M: Module>(grads: &GradientsParams, model: &M) -> Vec<(DType, Vec<f32>)> {
    struct Collect<'a>(&'a GradientsParams, Vec<(DType, Vec<f32>)>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let g = self
                .0
                .get::<D>(param.id)
                .expect("every parameter has a gradient");
            self.1.push((g.dtype(), values(g)));
        }
    }
    let mut c = Collect(grads, Vec::new());
    model.visit(&mut c);
    c.1
}

/// Replaces every float parameter by deterministic values of a trained network's size
/// (N(0, 1/fan) for weights, 1 + N(0, 0.01) for GroupNorm's γ, N(0, 0.01) for biases and β),
/// so the UNet's output is O(1) rather than the near-zero of its init (whose loss would not
/// depend on the network at all).
struct Scramble {
    rng: rng::SeededRng,
    /// Name of the field being mapped.
    field: String,
}
impl burn::module::ModuleMapper for Scramble {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.field = name.to_string();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (rng, gamma) = (&mut self.rng, self.field == "gamma");
        param.map(|t| {
            let shape = t.shape();
            let n = shape.num_elements();
            let noise = rng::normal_vec(rng, n);
            let v: Vec<f32> = if D >= 2 {
                let fan = (n / shape[0]).max(shape[0]) as f32;
                noise.iter().map(|z| z / fan.sqrt()).collect()
            } else {
                let one = if gamma { 1.0 } else { 0.0 };
                noise.iter().map(|z| one + 0.1 * z).collect()
            };
            Tensor::from_data(TensorData::new(v, shape), &t.device()).require_grad()
        })
    }
}

/// A digits-sized UNet step in bf16 mixed precision against the same step in f32: the loss is
/// an f32 tensor, it agrees with the f32 loss within the stated tolerance, and every parameter
/// (all f32 masters, GroupNorm's γ, β among them) receives an f32 gradient close to the f32
/// step's.
#[test]
fn unet_bf16_step_matches_f32() {
    let dev = Device::flex().autodiff();
    let cfg = UNetConfig {
        dropout: 0.0,
        ..UNetConfig::digits()
    };
    let model = cfg
        .init(&dev, &mut rng::seeded(13, 0))
        .expect("UNet")
        .map(&mut Scramble {
            rng: rng::seeded(13, 1),
            field: String::new(),
        });
    let b = 4;
    let shape = [b, cfg.in_channels, cfg.image_size, cfg.image_size];
    let n: usize = shape.iter().product();
    let mut r = rng::seeded(14, 0);
    let x_t = rng::normal_vec(&mut r, n);
    let noise = rng::normal_vec(&mut r, n);
    let t = [3.0f32, 250.0, 600.0, 990.0];
    let labels = [0usize, 3, 7, 10];

    let step = |precision: Precision| {
        let pred = predict_eps(
            &model,
            precision,
            tensor(x_t.clone(), shape, &dev),
            tensor(t.to_vec(), [b], &dev),
            Some(labels_tensor(&labels, &dev)),
        );
        assert_eq!(
            pred.dtype(),
            DType::F32,
            "the prediction reaches the loss in f32"
        );
        let loss = eps_mse(tensor(noise.clone(), shape, &dev), pred.clone());
        assert_eq!(loss.dtype(), DType::F32, "the loss is computed in f32");
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let pred: Vec<f64> = to_vec(pred).iter().map(|&v| v as f64).collect();
        (pred, to_vec(loss)[0] as f64, param_grads(&grads, &model))
    };
    let (p32, l32, g32) = step(Precision::F32);
    let (p16, l16, g16) = step(Precision::Bf16);
    let rms = |v: &[f64]| (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
    let p16: Vec<f32> = p16.iter().map(|&v| v as f32).collect();
    let pred_err = rel_err(&p16, &p32);
    eprintln!(
        "prediction: rms {:.3}, bf16 off by {pred_err:.2e} of its largest magnitude",
        rms(&p32)
    );
    assert!(
        rms(&p32) > 0.3,
        "the scrambled network predicts O(1) values"
    );
    // ~20 chained bf16 convolutions and products, each adding roundings of 2⁻⁹ ≈ 2e-3 of its
    // output (independent, so they add in quadrature, ~1e-2); the largest of 256 outputs
    // measured 2.0e-2. 5e-2 leaves room for another summation order in the bf16 kernels,
    // and an op left in bf16 with large offsets (as in the two tests above) misses by more.
    assert!(pred_err <= 5e-2, "bf16 prediction off by {pred_err:e}");
    let rel = (l16 - l32).abs() / l32;
    eprintln!("loss f32 {l32:.6}, bf16 {l16:.6}: relative difference {rel:.2e}");
    // The loss (≈ 1.2) is mostly E[ε²]; the prediction's independent ~1e-2 errors change it
    // by 2·E[(ε̂ − ε)·δε̂] ≈ 1e-4 (measured 9.7e-5). 2e-3 is twenty times that.
    assert!(rel <= 2e-3, "bf16 loss {l16} vs f32 {l32}");
    assert!(rel > 0.0, "the bf16 step computed in f32");

    assert_eq!(g16.len(), g32.len());
    let (mut diff2, mut norm2) = (0f64, 0f64);
    for ((dt, a), (_, b)) in g16.iter().zip(&g32) {
        assert_eq!(
            *dt,
            DType::F32,
            "gradients reach the f32 master weights in f32"
        );
        for (x, y) in a.iter().zip(b) {
            diff2 += (*x as f64 - *y as f64).powi(2);
            norm2 += (*y as f64).powi(2);
        }
    }
    let grad_rel = (diff2 / norm2).sqrt();
    eprintln!("gradient: ‖g_bf16 − g_f32‖ / ‖g_f32‖ = {grad_rel:.2e}");
    // Backward goes through the same ~20 bf16 products again (measured 2.8e-2, norm-wise).
    assert!(grad_rel <= 8e-2, "bf16 gradient off by {grad_rel:e}");
}

/// The f32 path is untouched: [`norm_act`] on an f32 tensor is exactly the kernels' GroupNorm.
#[test]
fn f32_norm_is_the_f32_kernel() {
    let dev = Device::flex().autodiff();
    let norm: GroupNorm = GroupNormConfig::new(4, 8).init(&dev);
    let x = tensor(
        rng::normal_vec(&mut rng::seeded(15, 0), 2 * 8 * 9),
        [2, 8, 3, 3],
        &dev,
    );
    assert_eq!(
        to_vec(norm_act(&norm, x.clone(), true)),
        to_vec(group_norm_act(&norm, x, true))
    );
}
