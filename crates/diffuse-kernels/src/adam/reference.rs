//! The reference: the update as burn's composed tensor operations, in the order burn's Adam
//! (burn-optim `adam.rs`, `AdaptiveMomentum::transform` then `Adam::step`) and
//! `diffuse::train::Ema::update` apply them. Every device can run it; the fused kernel is
//! tested against burn's optimizer itself (`tests/adam_cube.rs`).
use super::{AdamEmaScalars, AdamEmaTensors};

/// One update of every tensor in `t` with burn's operations, one chain per tensor (gradients
/// are consumed; the result holds no gradients).
pub fn adam_ema_composed(t: AdamEmaTensors, s: &AdamEmaScalars) -> AdamEmaTensors {
    let with_ema = !t.shadow.is_empty();
    let mut shadows = t.shadow.into_iter();
    let mut out = AdamEmaTensors::default();
    for (((p, g), m), v) in t.params.into_iter().zip(t.grads).zip(t.m).zip(t.v) {
        let m = m
            .mul_scalar(s.beta1)
            .add(g.clone().mul_scalar(s.one_minus_beta1));
        let v = v
            .mul_scalar(s.beta2)
            .add(g.square().mul_scalar(s.one_minus_beta2));
        let update = m
            .clone()
            .mul_scalar(s.step_factor)
            .div(v.clone().sqrt().add_scalar(s.eps_corrected));
        let p = p - update.mul_scalar(s.lr);
        if with_ema {
            let sh = shadows.next().expect("one shadow per parameter");
            out.shadow.push(
                sh.mul_scalar(s.ema_keep)
                    .add(p.clone().mul_scalar(s.ema_take)),
            );
        }
        out.params.push(p);
        out.m.push(m);
        out.v.push(v);
    }
    out
}
